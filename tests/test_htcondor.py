"""Notebook servers and Dask clusters on a real HTCondor personal pool.

The pool (condor_master and its daemons from Debian 13's htcondor, in the chroot that
scripts/test-install.d/30-htcondor.sh builds) is started by tests/htcondor_pool.py; the facility
is the embedded one plus an htcondor backend pointing at it, started with `af up`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

from backends.common.node_address import node_address
from backends.htcondor import commands
from backends.htcondor import gateway as htcondor_gateway
from backends.htcondor import submit as dialect
from tests.batch_helpers import (
    account_of,
    check_gateway_restart_keeps_the_cluster,
    check_hub_restart_keeps_the_job_server,
    check_notebooks_run_as_own_accounts,
    check_private_to,
    check_server_opens_with_the_examples,
    spawn_form,
    spawn_outcome,
    until,
    wait_gone,
    write_notebook,
)
from tests.harness import RunningFacility, embedded_raw
from tests.htcondor_pool import HTCondorPool
from tests.test_listen_hosts import cluster_listen_hosts

pytestmark = pytest.mark.batch_daemons


@pytest.fixture(scope="module")
def grid(pool: HTCondorPool, start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["backends"].append(pool.backend_entry("grid"))
    raw["hub"]["start_timeout_seconds"] = 90
    return start_facility(raw)


def _form(**overrides: str) -> dict[str, str]:
    return spawn_form("grid", "group_physics", **overrides)


def _jobs(pool: HTCondorPool, attribute: str, value: str) -> list[str]:
    return pool.jobs_with(attribute, value)


def _wait_for_notebook_job(pool: HTCondorPool, user: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _jobs(pool, "JupyterHubUser", user)
        if ids:
            return ids[0]
        time.sleep(0.3)
    raise AssertionError(f"no HTCondor job of {user} appeared")


def _job_ad(pool: HTCondorPool, job_id: str, *attributes: str) -> list[str]:
    return pool.run("condor_q", job_id, "-af", *attributes).stdout.split()


def _cache_url(running: RunningFacility) -> str:
    """The XCache the grid backend reads through, on the port `af up` gave it."""
    return running.runtime["data"]["caches"]["local-xcache"]["url"]


def test_notebook_server_runs_as_an_htcondor_job_and_answers_through_the_hub(grid, pool) -> None:
    alice = grid.login("alice")
    reply = alice.post_spawn_form(_form(cores="2", memory_gb="2", walltime_hours="2", queue="group_cms"))
    assert reply.status_code == 200, reply.text[-2000:]
    job = _wait_for_notebook_job(pool, "alice")
    cpus, memory, group, runtime = _job_ad(pool, job, "RequestCpus", "RequestMemory", "AcctGroup", "MaxRuntime")
    assert (cpus, memory, group, runtime) == ("2", "2048", "group_cms", "7200")
    server = alice.wait_ready(timeout=90)
    url, token = f"{alice.url}{server['url']}", alice.token()
    status = requests.get(f"{url}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert status.status_code == 200 and "started" in status.json()
    alice.stop_server()
    until(lambda: pool.job_ids() == [], "the notebook job to leave the queue", timeout=30)


def test_hub_restart_keeps_the_htcondor_job_server(grid, pool) -> None:
    """A restarted hub finds ivan's running HTCondor job again (issue 15): same job, server answers."""
    check_hub_restart_keeps_the_job_server(grid, "ivan", _form(), lambda: _jobs(pool, "JupyterHubUser", "ivan"))


def test_notebook_server_opens_with_the_examples_pulled_from_the_hub(grid, pool) -> None:
    """The job's server, inside the pool's chroot, pulls ~/examples over HTTP from the hub (the chroot's git)."""
    check_server_opens_with_the_examples(grid, "judy", _form())
    until(lambda: pool.job_ids() == [], "the notebook job to leave the queue", timeout=30)


def test_notebook_jobs_run_as_each_users_own_account(grid, pool) -> None:
    """HTCondor runs alice's and bob's notebook jobs as af-alice and af-bob: bob cannot read alice's token."""
    check_notebooks_run_as_own_accounts(grid, _form())
    until(lambda: pool.job_ids() == [], "the notebook jobs to leave the queue", timeout=30)


def test_shared_mode_runs_notebook_jobs_as_the_sites_job_user(pool, start_facility) -> None:
    """auth.unix_accounts.mode: shared: jobs run as site.htcondor_job_user, in folders the hub and gateway made."""
    from tests.batch_helpers import WHO_AND_TOKEN
    from tests.harness import execute_in_kernel

    raw = copy.deepcopy(embedded_raw())
    raw["backends"].append(pool.backend_entry("grid"))
    raw["auth"]["unix_accounts"] = {"mode": "shared"}
    shared = start_facility(raw)
    sam = shared.login("sam")
    reply = sam.post_spawn_form(_form())
    assert reply.status_code == 200, reply.text[-2000:]
    try:
        server = sam.wait_ready(timeout=90)
        out = execute_in_kernel(f"{sam.url}{server['url']}", sam.token(), WHO_AND_TOKEN.format(paths=[]))
        assert f" {pool.job_user} {pool.job_dir / 'notebooks' / 'sam'}" in out, out
        with Gateway(shared.runtime["gateways"]["grid"]["url"], auth=JupyterHubAuth(api_token=sam.token())) as gateway:
            cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
            try:
                cluster.scale(1)
                with cluster.get_client() as client:
                    client.wait_for_workers(1, timeout=120)
                    assert client.submit(sum, range(11)).result(timeout=60) == 55
            finally:
                cluster.shutdown()
    finally:
        sam.stop_server()
    until(lambda: pool.job_ids() == [], "the notebook and Dask jobs to leave the queue", timeout=60)
    start_facility.stop(shared)


def test_job_removed_while_starting_gives_a_clear_message_and_a_clean_hub(grid, pool) -> None:
    erin = grid.login("erin")
    # 32 cores: no slot matches, so the job is surely still idle when it is removed.
    reply = erin.api("POST", "/users/erin/server", json={"user_options": _form(cores="32")})
    assert reply.status_code in (201, 202), reply.text
    job = _wait_for_notebook_job(pool, "erin")
    pool.run("condor_rm", job)
    outcome = spawn_outcome(erin, timeout=60)
    assert outcome.get("failed"), outcome
    assert f"notebook job {job} left the HTCondor queue before the notebook server started" in outcome["message"]
    wait_gone(erin)
    # The hub is clean: the next spawn is accepted and reaches the pool at once.
    reply = erin.api("POST", "/users/erin/server", json={"user_options": _form()})
    assert reply.status_code in (201, 202), reply.text
    _wait_for_notebook_job(pool, "erin")
    erin.wait_ready(timeout=90)
    erin.stop_server()
    until(lambda: pool.job_ids() == [], "the queue to empty", timeout=30)


def test_job_held_while_starting_gives_its_hold_reason_and_a_clean_hub(grid, pool) -> None:
    ivan = grid.login("ivan")
    reply = ivan.api("POST", "/users/ivan/server", json={"user_options": _form(cores="32")})
    assert reply.status_code in (201, 202), reply.text
    job = _wait_for_notebook_job(pool, "ivan")
    pool.run("condor_hold", "-reason", "scratch disk full on the node", job)
    outcome = spawn_outcome(ivan, timeout=60)
    assert outcome.get("failed"), outcome
    assert f"HTCondor put your notebook job {job} on hold: scratch disk full on the node" in outcome["message"]
    wait_gone(ivan)
    until(lambda: pool.job_ids() == [], "the held job to be removed", timeout=30)


def test_job_idle_too_long_is_removed_with_a_clear_message(grid, pool) -> None:
    dave = grid.login("dave")
    reply = dave.api("POST", "/users/dave/server", json={"user_options": _form(cores="32")})
    assert reply.status_code in (201, 202), reply.text
    job = _wait_for_notebook_job(pool, "dave")
    outcome = spawn_outcome(dave, timeout=60)
    assert outcome.get("failed"), outcome
    assert f"notebook job {job} stayed idle in HTCondor" in outcome["message"]
    assert "no machine in the pool matches" in outcome["message"]
    assert pool.job_ids() == [], "the idle job was not removed"
    wait_gone(dave)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": 'group_physics\n+Owner = "root"'}, "is not available; choose one of: group_physics, group_cms"),
        ({"queue": "$(CONDOR_HOST)"}, "is not available; choose one of"),
        ({"memory_gb": "1\nrequirements = True"}, "is not a whole number"),
    ],
)
def test_form_values_with_submit_language_never_reach_htcondor(grid, pool, options, message) -> None:
    frank = grid.login("frank")
    reply = frank.api("POST", "/users/frank/server", json={"user_options": _form(**options)})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["message"]
    assert frank.server() is None
    assert pool.job_ids() == []


def test_dask_cluster_on_htcondor_scales_computes_and_leaves_no_job(grid, pool) -> None:
    token = grid.login("grace").token()
    gateway = Gateway(grid.runtime["gateways"]["grid"]["url"], auth=JupyterHubAuth(api_token=token))
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        assert len(_jobs(pool, "DaskGatewayRole", "worker")) == 2
        assert len(_jobs(pool, "DaskGatewayRole", "scheduler")) == 1
        assert client.submit(sum, range(101)).result(timeout=60) == 5050
        caches = client.run(lambda: __import__("os").environ.get("AF_DATA_CACHE"))
        assert set(caches.values()) == {_cache_url(grid)}  # the backend's data_cache
        # Without distributed's nanny's MALLOC_TRIM_THRESHOLD_ (backends.common.cluster_options.WORKER_ENVIRONMENT),
        # looked up in the workers: client.run(os.environ.get, ...) would pickle this process's os.environ.
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
        # Scheduler and workers run as grace's account; her staging folder (TLS key) is hers alone.
        uid = account_of("grace").uid
        assert set(client.run(os.getuid).values()) == {uid} and client.run_on_scheduler(os.getuid) == uid
        staging = Path(pool.job_dir) / "dask-gateway" / "grid" / "grace" / cluster.name
        check_private_to(staging / "dask.pem", "grace", "bob")
        # They listen on the node's address only, not every interface (backends.common.node_address).
        assert cluster_listen_hosts(client) == {node_address()}
        cluster.scale(1)
        until(lambda: len(_jobs(pool, "DaskGatewayRole", "worker")) == 1, "scale down to 1 worker", timeout=90)
        cluster.adapt(minimum=2, maximum=3)
        until(lambda: len(_jobs(pool, "DaskGatewayRole", "worker")) == 2, "adaptive scaling up to 2", timeout=90)
        client.close()
        # A worker job the gateway never recorded (stopped while its condor_submit was in flight) goes too.
        leaked = "\n".join(
            [
                "executable = /bin/sleep",
                "arguments = 300",
                "initialdir = /tmp",
                "should_transfer_files = NO",
                "+DaskGatewayCluster = " + dialect.classad_string(cluster.name),
                "queue",
            ]
        )
        submit = commands.condor_argv(pool.site, "condor_submit", account_of("grace"))
        subprocess.run(submit, input=leaked, capture_output=True, text=True, timeout=60, check=True)
    finally:
        cluster.shutdown()
        gateway.close()
    until(lambda: pool.job_ids() == [], "every Dask job to leave the queue", timeout=60)
    until(lambda: not staging.exists(), "the cluster's staging folder to be removed", timeout=30)


def test_gateway_restart_keeps_the_htcondor_cluster(grid, pool) -> None:
    """A restarted grid gateway reloads olga's HTCondor cluster (issue 15): same jobs, still computing."""

    def cluster_jobs() -> list[str]:
        return [*_jobs(pool, "DaskGatewayRole", "scheduler"), *_jobs(pool, "DaskGatewayRole", "worker")]

    check_gateway_restart_keeps_the_cluster(grid, "grid", "olga", cluster_jobs)


def test_arguments_and_environment_reach_a_real_job_unchanged(pool) -> None:
    """The quoting helpers against condor_submit itself: what a job receives is what was meant."""
    folder = Path(pool.job_dir) / "echo"
    folder.mkdir(exist_ok=True)
    os.chown(folder, *commands.job_user_ids(pool.site))  # the job account writes its output here
    out = folder / "echo.json"
    tricky = ["a b", "it's", 'say "hi"', "$(CONDOR_HOST)", "`id`; reboot", "\\"]
    description = "\n".join(
        [
            f"executable = {dialect.submit_value(pool.python)}",
            "arguments = "
            + dialect.condor_arguments(
                ["-c", "import json,os,sys; print(json.dumps([sys.argv[1:], os.environ['AF_X']]))", *tricky]
            ),
            "getenv = " + dialect.getenv_names({"AF_X": ""}),
            "transfer_executable = false",
            "should_transfer_files = NO",
            f"output = {out}",
            f"error = {out}.err",
            "+Marker = " + dialect.classad_string('x" || true || "'),
            "queue",
        ]
    )
    submitted = subprocess.run(
        pool.tool("condor_submit", "-terse"),
        input=description,
        capture_output=True,
        text=True,
        env={**os.environ, "AF_X": "$(HOME) 'q' \"d\""},
        timeout=60,
        check=True,
    )
    job = dialect.parse_submit_output(submitted.stdout)
    assert _job_ad(pool, job, "Marker") == ['x"', "||", "true", "||", '"']  # one string attribute, not code
    until(lambda: out.exists() and out.read_text().strip(), "the echo job's output", timeout=60)
    argv, env_value = json.loads(out.read_text())
    assert argv == tricky
    assert env_value == "$(HOME) 'q' \"d\""


def _readable_folder(pool: HTCondorPool, name: str) -> Path:
    """A notebook folder the job account can read (pytest's tmp_path is private to root)."""
    folder = Path(pool.job_dir) / name
    folder.mkdir()
    return folder


def test_af_run_on_htcondor_returns_the_executed_notebook(grid, pool, tmp_path) -> None:
    cell = "import os\nprint('ANSWER', x * 2, 'CACHE', os.environ['AF_DATA_CACHE'])"
    notebook = write_notebook(_readable_folder(pool, "nb-ok") / "double.ipynb", "x = 1", cell)
    result = grid.af("run", str(notebook), "--backend", "grid", "-p", "x", "21", "--run-dir", str(tmp_path / "run"))
    job = re.search(r"Submitted double.ipynb as HTCondor job (\d+\.\d+)", result.stderr)
    assert job, result.stderr
    executed = (tmp_path / "run" / "double.ipynb").read_text()
    assert f"ANSWER 42 CACHE {_cache_url(grid)}" in executed  # the parameter, and the site's data cache
    assert "Executing" in (tmp_path / "run" / "run.log").read_text()  # papermill's log from the job
    assert pool.job_ids() == []


def test_af_run_on_htcondor_of_a_failing_notebook_exits_non_zero(grid, pool, tmp_path) -> None:
    notebook = write_notebook(_readable_folder(pool, "nb-fail") / "fails.ipynb", "n = 0", "print('before'); 1 / n")
    result = grid.af("run", str(notebook), "--backend", "grid", "--run-dir", str(tmp_path / "run"), check=False)
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert "failed (exit code 1)" in message and "ZeroDivisionError" in message
    assert (tmp_path / "run" / "fails.ipynb").exists()  # papermill keeps the notebook up to the failing cell
    assert pool.job_ids() == []


# Submit language helpers and the notebook template (no daemons needed).


@pytest.mark.parametrize("value", ["alice\nrequirements = True", "x\r+Owner = 1", "$(CONDOR_HOST)", "a\0b"])
def test_values_that_would_change_a_submit_description_are_refused(value) -> None:
    with pytest.raises(dialect.SubmitValueError):
        dialect.submit_value(value)
    if "$" not in value:  # arguments write $ as $(DOLLAR), so only line breaks and NUL are refused there
        with pytest.raises(dialect.SubmitValueError):
            dialect.condor_arguments(["ok", value])


def test_classad_strings_escape_quotes_and_backslashes() -> None:
    assert dialect.classad_string('a"b\\c') == '"a\\"b\\\\c"'


def test_notebook_submit_description_carries_the_request_and_refuses_bad_values() -> None:
    from backends.htcondor.submit import render_notebook_submit

    values = {
        "executable": "/env/bin/batchspawner-singleuser",
        "arguments": dialect.condor_arguments(["/env/bin/jupyterhub-singleuser", "--x=$HOME; reboot"]),
        "getenv": dialect.getenv_names({"JUPYTERHUB_API_TOKEN": "t", "PATH": "/bin"}),
        "job_dir": "/jobs/alice",
        "cores": 2,
        "memory_mb": 4096,
        "gpus": 1,
        "accounting_group": "group_cms",
        "username": "alice",
        "username_ad": dialect.classad_string("alice"),
        "requirements": "",
        "walltime_seconds": 7200,
    }
    lines = render_notebook_submit(values).splitlines()
    for line in [
        "executable = /env/bin/batchspawner-singleuser",
        "arguments = \"'/env/bin/jupyterhub-singleuser' '--x=$(DOLLAR)HOME; reboot'\"",
        "getenv = JUPYTERHUB_API_TOKEN, PATH",
        "request_cpus = 2",
        "request_memory = 4096M",
        "request_gpus = 1",
        "accounting_group = group_cms",
        "accounting_group_user = alice",
        '+JupyterHubUser = "alice"',
        "+MaxRuntime = 7200",
        "queue",
    ]:
        assert line in lines, line
    for bad in [{"username": "alice\nqueue 100"}, {"accounting_group": "g\n+Owner = 1"}, {"job_dir": "$(SPOOL)"}]:
        with pytest.raises(dialect.SubmitValueError):
            render_notebook_submit({**values, **bad})


def test_backend_parses_condor_output() -> None:
    assert dialect.parse_submit_output("12.0 - 12.0\n") == "12.0"
    with pytest.raises(ValueError, match="printed no job id"):
        dialect.parse_submit_output("ERROR: Failed to connect to local queue manager")
    states = dialect.parse_states("12.0 1\n13.0 2\n14.0 5\n15.0 4\nnoise\n")
    assert states == {"12.0": 1, "13.0": 2, "14.0": 5, "15.0": 4}
    backend = htcondor_gateway.HTCondorBackend.__new__(htcondor_gateway.HTCondorBackend)
    live = htcondor_gateway.HTCondorBackend.parse_job_states(backend, "12.0 1\n13.0 2\n14.0 5\n15.0 4\n16.0 7\n")
    assert live == {"12.0": True, "13.0": True, "14.0": False, "15.0": False, "16.0": True}


def test_condor_tools_run_natively_or_from_a_chroot() -> None:
    assert commands.condor_argv({}, "condor_q") == ["condor_q"]
    assert commands.condor_argv({"htcondor_bin": "/opt/condor/bin"}, "condor_rm") == ["/opt/condor/bin/condor_rm"]
    assert commands.condor_argv({"htcondor_chroot": "/srv/c", "htcondor_job_user": "afjob"}, "condor_submit") == [
        shutil.which("chroot"), "--userspec=afjob:afjob", "/srv/c", "/usr/bin/condor_submit",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown HTCondor tool"):
        commands.condor_argv({}, "rm")


def test_condor_tools_run_as_the_users_account_in_per_user_mode() -> None:
    from facility.accounts import Account

    alice = Account("nobody-here", "af-nobody-here", 2001, 2002, Path("/home/af-nobody-here"))  # no groups
    site = {"htcondor_chroot": "/srv/c", "htcondor_job_user": "afjob"}  # the account replaces afjob
    assert commands.condor_argv(site, "condor_rm", alice)[1:] == [
        "--userspec=2001:2002", "--groups=2002", "/srv/c", "/usr/bin/condor_rm",
    ]  # fmt: skip
    assert commands.condor_argv({}, "condor_q", alice)[1:] == [
        "--reuid=2001", "--regid=2002", "--init-groups", "--", "condor_q",
    ]  # fmt: skip


def _gateway_description(tmp_path: Path, container_runtime: str) -> tuple[list[str], dict[str, str], str]:
    """What HTCondorBackend submits for a worker, on the example site's grid backend."""
    from types import SimpleNamespace

    import yaml

    from tests.harness import ROOT, write_facility

    raw = yaml.safe_load((ROOT / "examples" / "site-facility.yaml").read_text())
    grid = next(b for b in raw["backends"] if b["name"] == "tier2")
    grid.update(container_runtime=container_runtime, site={"environment": "/opt/af-env"})
    # Whose account runs condor_submit is not what these tests check; in per-user mode it must exist
    # on this host, which made them depend on the tests that happened to run before (CI run 16).
    raw["auth"]["unix_accounts"] = {"mode": "shared"}
    backend = htcondor_gateway.HTCondorBackend(
        facility_file=str(write_facility(tmp_path / "facility.yaml", raw)),
        facility_backend="tier2",
        staging_root="/shared/dask",
        api_url="http://gateway.example.org:8000/api",
    )
    config = htcondor_gateway.HTCondorClusterConfig(
        worker_cores=2,
        worker_memory=3 * 2**30,
        accounting_group="group_cms",
        max_idle_seconds=600,
        environment={"AF_IMAGE": "registry.example.org/analysis-facility/notebook:2026.9"},
        scheduler_cmd=["dask", "scheduler"],
        worker_cmd=["dask", "worker"],
    )
    # The two objects dask-gateway hands a backend: plain records of the cluster and the worker.
    cluster = SimpleNamespace(
        name="c0ffee", username="alice", config=config, token="tok", scheduler_address="tls://x:1"
    )
    return backend.get_submit_cmd_env_stdin(cluster, SimpleNamespace(name="w1"))


def test_gateway_worker_job_runs_in_the_images_cvmfs_path_with_apptainer(tmp_path) -> None:
    cmd, env, description = _gateway_description(tmp_path, "apptainer")
    lines = description.splitlines()
    assert "executable = apptainer" in lines
    args = next(line for line in lines if line.startswith("arguments = "))
    assert (
        "'exec' '/cvmfs/unpacked.cern.ch/registry.example.org/analysis-facility/notebook:2026.9' 'python' '-m' "
        "'backends.common.node_address' '--towards' 'tls://x:1' '--' 'dask' 'worker'"
        in args  # bound to the node's address when it starts (backends.common.node_address)
    )
    assert "request_cpus = 2" in lines and "request_memory = 3072M" in lines
    assert "accounting_group = group_cms" in lines
    assert "periodic_remove = (JobStatus == 1 && time() - QDate > 600)" in lines
    assert "initialdir = /shared/dask/alice/c0ffee" in lines
    assert env["AF_DATA_CACHE"].startswith("root://")  # the grid site's cache travels with the job
    assert lines[-1] == "queue" and cmd[-1] == "-terse"


def test_gateway_worker_job_without_container_uses_the_configured_environment(tmp_path) -> None:
    _, env, description = _gateway_description(tmp_path, "none")
    executable = next(line for line in description.splitlines() if line.startswith("executable = "))
    assert executable == "executable = /opt/af-env/bin/python"  # then its dask (backends.common.node_address)
    getenv = next(line for line in description.splitlines() if line.startswith("getenv = "))
    assert "DASK_GATEWAY_API_TOKEN" in getenv and "tok" not in description  # values travel in the environment
