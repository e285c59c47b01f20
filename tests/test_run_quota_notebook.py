"""`af run` from inside a notebook server counts against its user's quota (issue 20).

In her notebook server alice runs as her own Unix account, which cannot read the facility's
runtime.json (its secrets: af.host_access). `af run` there asks the hub instead
(POST /hub/api/af/runs with the server's own token, hub_config/run_admission.py): the hub reads the
ledger and records the run as hers. A real facility (local backend, per-user accounts): past her
quota she is refused with the words the CLI uses elsewhere; a run that fits counts for the gateway,
the hub and her other runs while under way and stops counting when it ends or is killed.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dask_gateway import Gateway, GatewayClusterError, JupyterHubAuth

from facility import runs
from facility.quota import RUN, Holding
from tests import notebook_runs
from tests.harness import RunningFacility, cluster_title, embedded_raw, free_port_block
from tests.notebook_runs import (
    BackgroundRun,
    af_run_in_server,
    assert_own_account_cannot_read_the_runtime,
    fresh_run,
    home_of,
    runs_of,
    start_run,
    wait_until,
    with_server,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="per-user accounts are created by root"),
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

SERVER = {"backend": "local", "cores": 1, "memory_gb": 1, "image": "coffea-2026"}


# --- a run's record: the lease and the process (no facility) ------------------------------------------


def test_a_leased_record_counts_while_its_lease_holds_and_its_checked_process_lives(tmp_path: Path) -> None:
    run = Holding(RUN, "local", "r1", cores=1, memory_gb=2)
    me = runs.Client(pid=os.getpid(), started=runs.process_started(os.getpid()), host="elsewhere")
    remote = runs.record_leased(tmp_path, "alice", run, me, pid_checked=False, lease_seconds=60)
    assert runs.running(tmp_path, "alice") == [run]
    assert runs.running(tmp_path, "alice", but=remote) == []
    assert runs.renew(tmp_path, "alice", remote, lease_seconds=-1)  # a lapsed lease: no longer counts
    assert runs.running(tmp_path, "alice") == []
    gone = runs.Client(pid=2**22 + 7, started=1.0, host="here")  # no such process: counts by lease alone
    unchecked = runs.record_leased(tmp_path, "alice", run, gone, pid_checked=False, lease_seconds=60)
    assert runs.running(tmp_path, "alice") == [run]
    runs.release(tmp_path, "alice", unchecked)
    checked = runs.record_leased(tmp_path, "alice", run, gone, pid_checked=True, lease_seconds=60)
    assert runs.running(tmp_path, "alice") == []  # its process is gone: no lease keeps it
    assert not runs.renew(tmp_path, "bob", checked, lease_seconds=60)  # another user's id is no run of bob's


@pytest.mark.parametrize("name", ["x;rm -rf ~", "$(id)", "a`b`", "", "a" * 101, "../up", "a\nb"])
def test_run_names_a_shell_would_read_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="run name"):
        runs.check_run_name(name)


# --- a real facility: alice's quota is 2 cores, 1 cluster, 1 run ---------------------------------------


@pytest.fixture(scope="module")
def running(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["quotas"] = {"default": {"cores": 2, "clusters": 1, "runs": 1}}
    return start_facility(raw)


@pytest.fixture(scope="module")
def alice(running: RunningFacility):
    session = running.login("alice")
    reply = session.api("POST", "/users/alice/server", json=SERVER)
    assert reply.status_code in (201, 202), reply.text
    return with_server(session, session.wait_ready())


@pytest.fixture(scope="module")
def gateway(running: RunningFacility, alice):
    with Gateway(running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=alice.token())) as gw:
        yield gw


def held_workers(running: RunningFacility) -> int:
    """alice's workers as the gateway's ledger route says (what the hub reads)."""
    gw = running.runtime["gateways"]["local"]
    reply = requests.get(
        f"{gw['url']}/api/af/clusters/alice", headers={"Authorization": f"Bearer {gw['api_token']}"}, timeout=10
    )
    reply.raise_for_status()
    return sum(c["workers"] for c in reply.json()["clusters"])


def records(running: RunningFacility) -> list[dict[str, Any]]:
    return notebook_runs.records(running, "alice")


def alice_runs(running: RunningFacility) -> list[Holding]:
    return runs_of(running, "alice")


@pytest.fixture
def start_alice_run(running, alice, gateway) -> Iterator[Callable[[str], BackgroundRun]]:
    """Start `af run NAME` in the background in alice's server, once an earlier test's cluster is
    gone (the tests count her holdings); each run started is let finish when the test ends."""
    wait_until(lambda: not gateway.list_clusters(), "her cluster to be gone")
    started: list[BackgroundRun] = []

    def start(name: str) -> BackgroundRun:
        started.append(start_run(running, alice, name))
        return started[-1]

    yield start
    for run in started:
        run.release()


def test_an_af_run_past_her_quota_is_refused_naming_what_she_holds(running, alice, gateway) -> None:
    assert_own_account_cannot_read_the_runtime(running, alice)
    fresh_run("alice", "refused")
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
    try:
        cluster.scale(1)  # with her 1-core server: both cores of her quota
        wait_until(lambda: held_workers(running) == 1, "her worker in the ledger")
        result = af_run_in_server(alice, "refused")
        assert result["rc"] == 1, result
        said = result["err"]
        assert "Starting af run refused on 'local' would exceed your quota (cores 3 of at most 2 on all backends)" in (
            said
        ), said
        assert "notebook server on 'local' (1 cores, 1 GB)" in said, said
        title = cluster_title(gateway, cluster.name)
        assert f"Dask cluster {title} on 'local' (1 workers: 1 cores, 1 GB)" in said, said
        assert "Stop one of these" in said, said
        assert not (home_of("alice") / "refused").exists(), "the refused run made its folder"
        assert records(running) == []  # the refused run left no record
    finally:
        gateway.stop_cluster(cluster.name)


def test_a_run_that_fits_counts_while_under_way_and_stops_counting_after(
    running, alice, gateway, start_alice_run
) -> None:
    fits = start_alice_run("fits")
    counted = "af run fits on 'local' (1 cores, 2 GB)"
    assert alice_runs(running) == [Holding(RUN, "local", "fits", cores=1, memory_gb=2)]
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
    try:
        try:
            # the gateway: her server's core and her run's leave no room for a worker
            with pytest.raises(GatewayClusterError, match="At most 0 workers of this size fit") as refused:
                cluster.scale(1)
            assert counted in str(refused.value)
            # the hub (its ledger, as for a spawn: hub_config/quota.py): a second run is refused naming the first
            second = af_run_in_server(alice, "second")
            assert second["rc"] == 1 and "runs 2 of at most 1 on all backends" in second["err"], second
            assert counted in second["err"], second
        finally:
            fits.release()
        assert fits.wait_ended() == 0, fits.errors()
        assert alice_runs(running) == [] and records(running) == []  # released: its record went with it
        cluster.scale(1)  # the core the run held is free again
        wait_until(lambda: held_workers(running) == 1, "her worker to count")
    finally:
        gateway.stop_cluster(cluster.name)


def test_a_killed_run_stops_counting_at_once(running, start_alice_run) -> None:
    start_alice_run("killed")
    (record,) = records(running)
    assert record["pid_checked"], record  # the hub saw the process on its own host
    os.kill(record["pid"], signal.SIGKILL)  # no release, no renewal: its process is gone
    wait_until(lambda: alice_runs(running) == [], "the killed run to stop counting", timeout=5)


def test_the_hub_route_refuses_bad_input_in_plain_words(running, alice) -> None:
    token = alice.token()
    url = f"{running.url}/hub/api/af/runs"
    client = {"pid": 1, "started": 0.0, "host": "somewhere"}
    before = records(running)

    def post(body: dict[str, Any], token: str | None = token) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.post(url, json=body, headers=headers, timeout=30)

    reply = post({"backend": "nope", "name": "r", **client})
    assert reply.status_code == 400, reply.text
    assert "unknown backend 'nope'; backends: local" in reply.json()["message"]
    reply = post({"backend": "local", "name": "x;rm -rf ~", **client})
    assert reply.status_code == 400, reply.text
    assert "run name 'x;rm -rf ~'" in reply.json()["message"]
    reply = post({"backend": "local", "name": "r", "pid": "one", "started": 0.0, "host": "h"})
    assert reply.status_code == 400 and "pid" in reply.json()["message"], reply.text
    assert post({"backend": "local", "name": "r", **client}, token=None).status_code == 403
    assert (
        requests.delete(f"{url}/nosuchrun", headers={"Authorization": f"token {token}"}, timeout=30).status_code == 404
    )
    assert records(running) == before  # nothing recorded for a refused request


def test_a_run_elsewhere_counts_by_its_lease_which_the_client_renews_and_releases(running, alice) -> None:
    """A run whose process the hub cannot see (a batch node, a pod): counted while its lease holds."""
    headers = {"Authorization": f"token {alice.token()}"}
    url = f"{running.url}/hub/api/af/runs"
    elsewhere = {"backend": "local", "name": "remote", "pid": 4242, "started": 1.0, "host": "node-17.example.org"}
    reply = requests.post(url, json=elsewhere, headers=headers, timeout=30)
    assert reply.status_code == 201, reply.text
    answer = reply.json()
    assert answer["lease_seconds"] > answer["renew_seconds"] > 0
    (record,) = [r for r in records(running) if r["name"] == "remote"]
    assert not record["pid_checked"] and alice_runs(running) == [Holding(RUN, "local", "remote", 1, 2)]
    time.sleep(1)
    assert requests.put(f"{url}/{answer['id']}", headers=headers, timeout=30).status_code == 200
    (renewed,) = [r for r in records(running) if r["name"] == "remote"]
    assert renewed["lease_until"] > record["lease_until"]
    assert requests.delete(f"{url}/{answer['id']}", headers=headers, timeout=30).status_code == 204
    assert alice_runs(running) == []
    gone = requests.put(f"{url}/{answer['id']}", headers=headers, timeout=30)
    assert gone.status_code == 404 and "no run" in gone.json()["message"], gone.text


def test_a_name_a_shell_would_read_and_a_hub_that_is_down_get_plain_messages(running, alice) -> None:
    bad = af_run_in_server(alice, "x;id")
    assert bad["rc"] == 1 and "run name 'x;id'" in bad["err"], bad
    closed = free_port_block(1)
    down = af_run_in_server(alice, "down", env={"JUPYTERHUB_API_URL": f"http://127.0.0.1:{closed}/hub/api"})
    assert down["rc"] == 1, down
    assert (
        f"Cannot check your quota right now: the hub at http://127.0.0.1:{closed}/hub/api did not answer"
        in (down["err"])
    ), down
    assert "Try again in a minute." in down["err"], down
