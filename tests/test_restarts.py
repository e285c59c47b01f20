"""Restarts and crashes keep work: the real facility, one component at a time.

alice has a notebook server and a Dask cluster. The hub, the gateway, the proxy and the Dask
dashboard service are each restarted through af's supervisord (`supervisorctl restart`) or killed
with SIGKILL; after each, her server still answers, her cluster still computes (reconnected by
name), no log says "Address already in use" and each service port has one owner. `af down` then
stops the server and the cluster cleanly (through the hub and the gateway) and leaves no process
of the facility. The hub's log holds each request line once (no second handler from distributed).
"""

from __future__ import annotations

import copy
import os
import re
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from tests.harness import HubSession, RunningFacility, embedded_raw, execute_in_kernel
from tests.supervision import pid_of, supervisor, wait_for

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)

START_CLUSTER = """
from dask_backends import new_cluster
cluster = new_cluster("local", workers=1, worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
cluster.get_client().wait_for_workers(1, timeout=120)
print("CLUSTER", cluster.name)
"""

COMPUTE = """
from dask_backends import gateway
import dask.array as da
cluster = gateway("local").connect({name!r})
client = cluster.get_client()
client.wait_for_workers(1, timeout=60)
print("TOTAL", int(da.arange(1_000_000, chunks=100_000).sum().compute()))
client.close()
"""


class Work:
    """alice's running server and cluster."""

    def __init__(self, session: HubSession, url: str, token: str, cluster: str):
        self.session, self.url, self.token, self.cluster = session, url, token, cluster


@pytest.fixture(scope="module")
def running(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["hub"]["idle_cull"] = {"minutes": 60}  # the idle culler runs too (under af's supervisor)
    return start_facility(raw)


def start_alices_work(running: RunningFacility) -> Work:
    """alice's local server, and a Dask cluster started from its kernel."""
    alice = running.login("alice")
    reply = alice.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = alice.wait_ready()
    url, token = f"{running.url}{server['url']}", alice.token()
    out = execute_in_kernel(url, token, START_CLUSTER)
    return Work(alice, url, token, out.split("CLUSTER ")[1].split()[0])


@pytest.fixture(scope="module")
def work(running: RunningFacility) -> Work:
    return start_alices_work(running)


def kill9(running: RunningFacility, name: str) -> None:
    """SIGKILL the component and wait until supervisord runs a new copy."""
    old = pid_of(running, name)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = supervisor(running, "status", name)
        if "RUNNING" in line and f"pid {old}," not in line:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} was not restarted after kill -9: {line}")


def server_answers(work: Work) -> bool:
    reply = requests.get(f"{work.url}api/status", headers={"Authorization": f"token {work.token}"}, timeout=10)
    return reply.status_code == 200


def assert_work_survived(running: RunningFacility, work: Work) -> None:
    wait_for(lambda: requests.get(f"{running.url}/hub/health", timeout=5).ok, "the hub through the proxy")
    wait_for(lambda: (work.session.server() or {}).get("ready"), "the hub to list alice's server as ready")
    wait_for(lambda: server_answers(work), "alice's server through the proxy")
    try:
        out = execute_in_kernel(work.url, work.token, COMPUTE.format(name=work.cluster))
    except Exception:
        keep_logs(running)
        raise
    assert "TOTAL 499999500000" in out
    assert_no_port_clash(running)


def keep_logs(running: RunningFacility) -> None:
    """The facility's logs into test-artifacts/, for a failure to be read after the facility is gone."""
    target = Path(__file__).resolve().parent.parent / "test-artifacts" / "restarts"
    target.mkdir(parents=True, exist_ok=True)
    for log in (running.state_dir / "logs").glob("*.log"):
        (target / log.name).write_bytes(log.read_bytes())


def assert_no_port_clash(running: RunningFacility) -> None:
    for log in (running.state_dir / "logs").glob("*.log"):
        assert "address already in use" not in log.read_text(errors="replace").lower(), log.name
    # Each service process exists once, supervised (no orphan of an earlier hub).
    for module in ("hub_config.dashboard_service", "jupyterhub_idle_culler"):
        copies = [p for p in facility_processes(running) if module in " ".join(p.cmdline())]
        assert len(copies) == 1, (module, [p.pid for p in copies])


def facility_processes(running: RunningFacility) -> list[psutil.Process]:
    marker = f"AF_INSTANCE={running.state_dir}".encode()
    found = []
    for proc in psutil.process_iter():
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as env:
                if marker in env.read().split(b"\0"):
                    found.append(proc)
        except OSError:
            continue
    return found


def hub_log(running: RunningFacility) -> str:
    return (running.state_dir / "logs" / "hub.log").read_text(errors="replace")


def test_hub_logs_each_request_once(running: RunningFacility) -> None:
    probe = uuid.uuid4().hex
    requests.get(f"{running.url}/hub/api/no-such-endpoint-{probe}", timeout=10)
    time.sleep(1)
    lines = [line for line in hub_log(running).splitlines() if probe in line]
    assert len(lines) == 1, lines  # the 404 warning, once, in the hub's own format
    assert lines[0].startswith("[W "), lines


def test_hub_restart_keeps_the_server_and_the_cluster(running: RunningFacility, work: Work) -> None:
    assert "hub: stopped" in supervisor(running, "restart", "hub")
    assert_work_survived(running, work)
    assert "Leaving single-user servers running" in hub_log(running)


def test_hub_kill9_keeps_the_server_and_no_service_clashes(running: RunningFacility, work: Work) -> None:
    services = {name: pid_of(running, name) for name in ("dask-dashboards", "idle-culler")}
    kill9(running, "hub")
    assert_work_survived(running, work)
    # The services are supervisord's, not the hub's: the same processes serve on.
    assert {name: pid_of(running, name) for name in services} == services


def test_gateway_restart_keeps_the_cluster(running: RunningFacility, work: Work) -> None:
    assert "gateway-local: stopped" in supervisor(running, "restart", "gateway-local")
    assert_work_survived(running, work)
    log = (running.state_dir / "logs" / "gateway-local.log").read_text()
    assert "clusters keep running" in log and "Stopping 1 active clusters" not in log


def test_gateway_kill9_keeps_the_cluster(running: RunningFacility, work: Work) -> None:
    kill9(running, "gateway-local")
    assert_work_survived(running, work)


def test_proxy_restart_routes_return_within_seconds(running: RunningFacility, work: Work) -> None:
    supervisor(running, "restart", "proxy")
    seconds = wait_for(lambda: server_answers(work), "alice's route in the restarted proxy", timeout=30)
    assert seconds < 15, seconds
    assert_work_survived(running, work)


def test_dashboard_service_kill9_comes_back_on_its_port(running: RunningFacility, work: Work) -> None:
    link = f"{running.url}/services/dask-dashboards/local/clusters/{work.cluster}/status"
    assert work.session.http.get(link, timeout=60).status_code == 200
    kill9(running, "dask-dashboards")
    wait_for(lambda: work.session.http.get(link, timeout=30).status_code == 200, "the dashboard after kill -9")
    assert_work_survived(running, work)


def test_logs_hold_no_second_handlers_copy(running: RunningFacility, work: Work) -> None:
    """After spawns, kernels, clusters and restarts: no line in distributed's format (its stderr
    handler on tornado's loggers doubled every request line of the hub before)."""
    for name in ("hub", "gateway-local"):
        text = (running.state_dir / "logs" / f"{name}.log").read_text(errors="replace")
        doubled = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - .*$", text, re.MULTILINE)
        assert doubled == [], (name, doubled[:3])
    # alice's server writes its own log, not into the hub's (whose pipe a hub restart closes).
    assert "ServerApp]" in (running.state_dir / "logs" / "servers" / "alice.log").read_text()
    assert "ServerApp]" not in hub_log(running)  # the server's own lines ("[I ... ServerApp] ...")


def test_af_down_stops_servers_and_clusters_and_leaves_no_process(running: RunningFacility, work: Work) -> None:
    out = " ".join(running.af("down").stdout.split())
    assert "1 notebook servers stopped" in out, out
    assert "leftover" not in out, out  # nothing needed the sweep: each was stopped by its owner
    gateway_log = (running.state_dir / "logs" / "gateway-local.log").read_text()
    assert "stopping its clusters (af down)" in gateway_log and f"Cluster {work.cluster} stopped" in gateway_log
    assert facility_processes(running) == []
    # A new `af up` starts with no stale server of alice's.
    port = str(running.runtime["ports"]["public"])
    running.af("up", "--facility", str(running.facility_file), "--port", port)
    try:
        again = running.login("alice")
        assert again.server() is None
    finally:
        running.af("down")
