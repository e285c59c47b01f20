"""Helpers shared by the batch-backend tests (tests/test_slurm.py, tests/test_htcondor.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.harness import HubSession, RunningFacility, execute_in_kernel, scope_account_prefix
from tests.spawn_events import final_event


def spawn_form(backend: str, queue: str, /, **overrides: str) -> dict[str, str]:
    """The spawn form's fields for a small notebook server on `backend`; `overrides` replace any."""
    fields = {
        "backend": backend,
        "image": "coffea-2026",
        "cores": "1",
        "memory_gb": "1",
        "queue": queue,
        "walltime_hours": "1",
    }
    return {**fields, **overrides}


def spawn_outcome(session: HubSession, timeout: float = 120) -> dict:
    """Follow the hub's progress stream of a spawn until it is ready or has failed."""
    return final_event(session.progress(), timeout)


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    """Wait until `check()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def wait_gone(session: HubSession, timeout: float = 30) -> None:
    until(lambda: session.server() is None, f"{session.username}'s server to be gone", timeout)


def write_notebook(path: Path, *cells: str) -> Path:
    """A notebook whose first cell (tagged `parameters`) papermill fills in."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(cell) for cell in cells[1:]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


# Per-user Unix accounts (auth.unix_accounts, per-user by default): what a batch job runs as.

WHO_AND_TOKEN = """
import os, pwd
print("WHO", os.getuid(), pwd.getpwuid(os.getuid()).pw_name, os.getcwd())
for path in {paths!r}:
    try:
        open(path).read()
        print("READ", path, "ok")
    except PermissionError:
        print("READ", path, "refused")
"""


def account_of(hub_name: str):  # noqa: ANN201 - facility.accounts.Account
    """The facility account of a hub user (created if missing), under this test scope's prefix."""
    from facility.accounts import ensure_account
    from facility.model import UnixAccounts

    return ensure_account(hub_name, UnixAccounts(prefix=scope_account_prefix()))


def as_account(hub_name: str, *argv: str) -> subprocess.CompletedProcess:
    """Run a command as a hub user's facility account."""
    return subprocess.run([*account_of(hub_name).setpriv_argv(), *argv], capture_output=True, text=True, timeout=60)


def check_notebooks_run_as_own_accounts(running: RunningFacility, form: dict[str, str]) -> None:
    """alice's and bob's batch notebooks run as af-alice and af-bob in their homes; bob cannot read
    alice's token file (written by the hub as for a login) nor her home, alice can read her own."""
    from facility.runtime import Runtime
    from facility.tokens import token_files_of

    token = token_files_of(Runtime.from_dict(running.runtime)).write("alice", "alice-secret-token")
    secret = account_of("alice").home / "private.txt"
    sessions = {name: running.login(name) for name in ("alice", "bob")}
    for session in sessions.values():
        reply = session.post_spawn_form(form)
        assert reply.status_code == 200, reply.text[-2000:]
    try:
        secret.write_text("alice's notes")
        os.chown(secret, account_of("alice").uid, account_of("alice").gid)
        secret.chmod(0o600)
        for name, session in sessions.items():
            server = session.wait_ready(timeout=90)
            code = WHO_AND_TOKEN.format(paths=[str(token), str(secret)])
            out = execute_in_kernel(f"{session.url}{server['url']}", session.token(), code)
            account = account_of(name)
            assert f"WHO {account.uid} {account.name} {account.home}" in out, out
            verdict = "ok" if name == "alice" else "refused"
            assert f"READ {token} {verdict}" in out and f"READ {secret} {verdict}" in out, out
    finally:
        for session in sessions.values():
            session.stop_server()
        secret.unlink(missing_ok=True)
        token_files_of(Runtime.from_dict(running.runtime)).remove("alice")


def check_server_opens_with_the_examples(running: RunningFacility, user: str, form: dict[str, str]) -> None:
    """`user`'s batch notebook server clones ~/examples over HTTP from the hub before it answers, and
    opening it from the hub lands in JupyterLab."""
    from af.hub_content import example_notebooks

    # A first start: a clone left by an earlier test facility would make this an update instead.
    shutil.rmtree(account_of(user).home / "examples", ignore_errors=True)
    session = running.login(user)
    reply = session.post_spawn_form(form)
    assert reply.status_code == 200, reply.text[-2000:]
    try:
        server = session.wait_ready(timeout=90)
        url, headers = f"{session.url}{server['url']}", {"Authorization": f"token {session.token()}"}
        opened = requests.get(url, headers=headers, allow_redirects=False, timeout=30)
        assert opened.status_code in (301, 302), opened.text[-500:]
        assert f"/user/{user}/lab" in opened.headers["Location"], opened.headers["Location"]  # not a pull page
        listing = requests.get(f"{url}api/contents/examples", headers=headers, timeout=30)
        assert listing.status_code == 200, listing.text
        names = sorted(item["name"] for item in listing.json()["content"])
        assert names == [p.name for p in example_notebooks()]
    finally:
        session.stop_server()


def check_hub_restart_keeps_the_job_server(
    running: RunningFacility, user: str, form: dict[str, str], jobs: Callable[[], list[str]]
) -> None:
    """`user`'s batch notebook server outlives a restart of the hub: the restarted hub finds its
    job (batchspawner's state in the hub's database, polled through the batch system), lists the
    server as ready and routes to it; the batch system holds the same one job; stopping it ends
    the job. `jobs()` lists the batch system's job ids of that user's notebook server."""
    from tests.supervision import supervisor, wait_for

    session = running.login(user)
    reply = session.post_spawn_form(form)
    assert reply.status_code == 200, reply.text[-2000:]
    server = session.wait_ready(timeout=90)
    url, headers = f"{session.url}{server['url']}", {"Authorization": f"token {session.token()}"}
    before = jobs()
    assert len(before) == 1, before
    started = (running.state_dir / "logs" / "hub.log").stat().st_size

    assert "hub: stopped" in supervisor(running, "restart", "hub")
    wait_for(lambda: requests.get(f"{running.url}/hub/health", timeout=5).ok, "the restarted hub")
    wait_for(lambda: (session.server() or {}).get("ready"), f"the restarted hub to list {user}'s server as ready")
    wait_for(lambda: requests.get(f"{url}api/status", headers=headers, timeout=10).ok, f"{user}'s server")
    assert jobs() == before, "the restarted hub lost the job or started another"
    with open(running.state_dir / "logs" / "hub.log", errors="replace") as log:
        log.seek(started)
        said = log.read()
    assert "Leaving single-user servers running" in said and f"{user} still running" in said, said[-3000:]

    session.stop_server()
    until(lambda: jobs() == [], f"{user}'s notebook job to end", timeout=30)


def check_gateway_restart_keeps_the_cluster(
    running: RunningFacility, backend: str, user: str, jobs: Callable[[], list[str]]
) -> None:
    """`user`'s Dask cluster on a batch backend outlives a restart of its gateway: the restarted
    gateway reloads it from its database, the client reconnects by name and computes on the same
    scheduler and worker jobs; stopping it ends them. `jobs()` lists the cluster's batch job ids."""
    from dask_gateway import Gateway, JupyterHubAuth

    from tests.supervision import supervisor, wait_for

    auth = JupyterHubAuth(api_token=running.login(user).token())
    with Gateway(running.runtime["gateways"][backend]["url"], auth=auth) as gateway:
        # Each GatewayCluster is closed here, on this thread: one left to the garbage collector may be
        # collected on the client's event-loop thread, whose __del__ then waits on that same thread.
        cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
        name = cluster.name
        try:
            cluster.scale(1)
            with cluster.get_client() as client:
                client.wait_for_workers(1, timeout=120)
            cluster.close()  # this connection only: the cluster runs on
            before = sorted(jobs())
            assert len(before) == 2, before  # scheduler and worker

            assert f"gateway-{backend}: stopped" in supervisor(running, "restart", f"gateway-{backend}")

            def listed() -> bool:
                try:
                    return [c.name for c in gateway.list_clusters()] == [name]
                except ValueError:  # "Not Found" while the restarted gateway's proxy has no routes yet
                    return False

            wait_for(listed, "the restarted gateway to list the cluster")
            again = gateway.connect(name)
            try:
                with again.get_client() as client:
                    client.wait_for_workers(1, timeout=90)
                    assert client.submit(sum, range(101)).result(timeout=60) == 5050
            finally:
                again.close()
            assert sorted(jobs()) == before, "the restart replaced or lost the cluster's jobs"
        finally:
            gateway.stop_cluster(name)
    until(lambda: jobs() == [], f"{user}'s cluster jobs to end", timeout=60)


def check_private_to(path: Path, owner: str, other: str) -> None:
    """`path` is readable by `owner`'s account and not by `other`'s."""
    assert as_account(owner, "cat", str(path)).returncode == 0, f"{owner} cannot read {path}"
    refused = as_account(other, "cat", str(path))
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
