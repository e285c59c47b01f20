"""Dask dashboards only for their cluster's owner, against the real embedded facility.

alice starts a cluster from her notebook. Its dashboard opens for her through the hub's
`dask-dashboards` service (HTTP and bokeh's websocket, in Chromium too); bob, logged in to
the same hub, gets a page saying he has no such cluster; an anonymous browser is sent to the
hub's login; the gateway's own `/clusters/<name>/` route and the scheduler's and workers' HTTP
ports answer 403 to anyone without the cluster's key (hub_config/dashboard_service.py,
gateway/dashboard_guard.py). The same holds for clusters on a real single-node Slurm and a
real HTCondor pool, whose jobs get their key through the submit command's environment.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth
from distributed.comm import get_address_host
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from facility.dashboard_keys import KEY_HEADER, dashboard_key
from tests.browser import chromium_page, sync_api_or_skip
from tests.harness import HubSession, RunningFacility, embedded_raw, execute_in_kernel
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster, unavailable_reason

# dask_gateway.Gateway.__del__ closes a second time after close() and trips over its stopped loop
# (dask-gateway 2026.3 with distributed 2026.8): noise at garbage collection, not a failure here.
pytestmark = [
    pytest.mark.batch_daemons,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

OWNER, OTHER = "dash-alice", "dash-bob"

START_CLUSTER = """
import json
import dask
from dask_backends import new_cluster
cluster = new_cluster(
    "local", workers=1, shutdown_on_close=False, worker_cores=1, worker_memory_gb=1
)
cluster.get_client().wait_for_workers(1, timeout=90)
plain = dask.config.get("gateway.public-address")
print(json.dumps({"name": cluster.name, "link": cluster.dashboard_link, "plain": plain}))
"""


class Cluster:
    """alice's running cluster: its name, dashboard link, and the ports its processes serve HTTP on."""

    def __init__(self, name: str, link: str, plain_public_address: str, ports: dict[str, int]):
        self.name = name
        self.link = link
        self.plain_public_address = plain_public_address
        self.ports = ports


@pytest.fixture(scope="module")
def owner(embedded: RunningFacility) -> HubSession:
    return embedded.login(OWNER)


@pytest.fixture(scope="module")
def other(embedded: RunningFacility) -> HubSession:
    return embedded.login(OTHER)


@pytest.fixture(scope="module")
def cluster(embedded: RunningFacility, owner: HubSession) -> Iterator[Cluster]:
    """A cluster with one worker, started in alice's notebook as a user would; stopped at the end."""
    owner.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    server = owner.wait_ready()
    token = owner.token()
    out = execute_in_kernel(f"{embedded.url}{server['url']}", token, START_CLUSTER)
    started = json.loads(out.strip().splitlines()[-1])
    gateway = Gateway(embedded.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=token))
    try:
        with gateway.connect(started["name"]).get_client(set_as_default=False) as client:
            info = client.scheduler_info()
        ports = {"scheduler": info["services"]["dashboard"]}
        ports.update({f"worker {w['name']}": w["services"]["dashboard"] for w in info["workers"].values()})
        yield Cluster(started["name"], started["link"], started["plain"], ports)
    finally:
        gateway.stop_cluster(started["name"])
        gateway.close()
        owner.stop_server()


def _websocket_status(url: str, headers: dict[str, str]) -> int:
    """HTTP status of a websocket handshake (101 when it opened)."""

    async def attempt() -> int:
        try:
            conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=30))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    return IOLoop().run_sync(attempt, timeout=60)


def test_key_is_bound_to_owner_and_cluster() -> None:
    key = dashboard_key("secret", "alice", "c1")
    assert key == dashboard_key("secret", "alice", "c1")
    assert key not in {
        dashboard_key("secret", "bob", "c1"),
        dashboard_key("secret", "alice", "c2"),
        dashboard_key("other secret", "alice", "c1"),
        dashboard_key("secret", "alic", "ec1"),  # the boundary between the names counts
    }
    with pytest.raises(ValueError, match="secret is empty"):
        dashboard_key("", "alice", "c1")


@pytest.mark.parametrize("key", ["a-cluster-key", ""], ids=["with-key", "key-missing"])
def test_guard_preload_on_a_real_scheduler(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """The preload guards the scheduler's HTTP server; without a key it refuses everyone (fails closed:
    distributed would only log a preload that raised, and serve an open dashboard)."""
    from distributed import Scheduler
    from tornado.httpclient import AsyncHTTPClient

    monkeypatch.setenv("AF_DASHBOARD_KEY", key)

    async def statuses() -> list[int]:
        async with Scheduler(
            host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0", preload=["gateway.dashboard_guard"]
        ) as scheduler:
            url = f"http://127.0.0.1:{scheduler.http_server.port}/health"
            http = AsyncHTTPClient()
            return [
                (await http.fetch(url, headers=headers, raise_error=False)).code
                for headers in ({}, {KEY_HEADER: "wrong"}, {KEY_HEADER: key})
            ]

    assert asyncio.run(statuses()) == ([403, 403, 200] if key else [403, 403, 403])


def test_dashboard_links_point_to_the_hub_service(embedded: RunningFacility, cluster: Cluster) -> None:
    base = f"{embedded.url}/services/dask-dashboards/local"
    assert cluster.link == f"{base}/clusters/{cluster.name}/status"
    # A plain dask_gateway.Gateway() in the notebook links the same place (its gateway.public-address).
    assert cluster.plain_public_address == base


def test_owner_sees_the_dashboard_through_the_hub(owner: HubSession, cluster: Cluster) -> None:
    page = owner.http.get(cluster.link, timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert page.url == cluster.link  # after the hub's OAuth round trip, back on the dashboard
    assert "bokeh" in page.text and "Dask" in page.text
    # Relative links of the page resolve under the service too (the scheduler's JSON, statics).
    counts = owner.http.get(cluster.link.replace("/status", "/json/counts.json"), timeout=60)
    assert counts.status_code == 200 and counts.json()["workers"] == 1
    css = owner.http.get(cluster.link.replace("/status", "/statics/css/base.css"), timeout=60)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")


def test_a_crafted_path_cannot_leave_the_clusters_route(
    embedded: RunningFacility, owner: HubSession, cluster: Cluster
) -> None:
    climb = cluster.link.replace("/status", "/%2e%2e/%2e%2e/api/v1/clusters/")
    assert owner.http.get(climb, timeout=60).status_code == 404
    # Straight to the service's port, past the hub's proxy (which may clean the path itself).
    direct = climb.replace(embedded.url, f"http://127.0.0.1:{embedded.runtime['ports']['dashboards']}")
    reply = requests.get(direct, headers={"Authorization": f"token {owner.token()}"}, timeout=60)
    assert reply.status_code == 404 and "no such dashboard page" in reply.text


def test_another_user_is_refused(embedded: RunningFacility, other: HubSession, cluster: Cluster) -> None:
    page = other.http.get(cluster.link, timeout=60)
    assert page.status_code == 404
    assert f"You ({OTHER}) have no running Dask cluster" in page.text
    assert "only shown to the user who started its cluster" in page.text
    assert "bokeh" not in page.text
    # With his API token instead of the browser cookie, and for the bokeh websocket: the same.
    bob = {"Authorization": f"token {other.token()}"}
    assert requests.get(cluster.link, headers=bob, timeout=60).status_code == 404
    ws = cluster.link.replace("http", "ws", 1) + "/ws"
    assert _websocket_status(ws, bob) == 404
    # A backend that does not exist is named as such.
    unknown = other.http.get(cluster.link.replace("/local/", "/nowhere/"), timeout=60)
    assert unknown.status_code == 404 and "no Dask backend named &#x27;nowhere&#x27;" in unknown.text


def test_anonymous_is_sent_to_the_hub_login(embedded: RunningFacility, cluster: Cluster) -> None:
    first = requests.get(cluster.link, timeout=60, allow_redirects=False)
    assert first.status_code == 302
    assert first.headers["Location"].startswith("/hub/api/oauth2/authorize?client_id=service-dask-dashboards")
    followed = requests.get(cluster.link, timeout=60)
    assert followed.url.startswith(f"{embedded.url}/hub/login") and "bokeh" not in followed.text


def test_gateway_route_and_own_ports_refuse_requests_without_the_key(
    embedded: RunningFacility, cluster: Cluster
) -> None:
    gateway_route = f"{embedded.runtime['gateways']['local']['url']}/clusters/{cluster.name}"
    refused = requests.get(f"{gateway_route}/status", timeout=30)
    assert refused.status_code == 403 and "only for its cluster's owner" in refused.text
    assert requests.get(f"{gateway_route}/json/counts.json", timeout=30).status_code == 403
    assert set(cluster.ports) >= {"scheduler"} and any(k.startswith("worker") for k in cluster.ports)
    secret = embedded.runtime["secrets"]["dashboard_secret"]
    right = {KEY_HEADER: dashboard_key(secret, OWNER, cluster.name)}
    wrong = {KEY_HEADER: dashboard_key(secret, OTHER, cluster.name)}  # what bob's session would carry
    for process, port in cluster.ports.items():
        base = f"http://127.0.0.1:{port}"
        page = "status" if process == "scheduler" else "health"
        for headers in ({}, wrong, {KEY_HEADER: ""}):
            reply = requests.get(f"{base}/{page}", headers=headers, timeout=30)
            assert reply.status_code == 403, (process, headers, reply.status_code)
            assert _websocket_status(f"ws://127.0.0.1:{port}/status/ws", headers) == 403, process
        # The owner's key opens it: the refusals above are the guard, not a server that is down.
        assert requests.get(f"{base}/{page}", headers=right, timeout=30).status_code == 200, process
    assert requests.get(f"{gateway_route}/status", headers=right, timeout=30).status_code == 200


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_api_or_skip()
    with chromium_page(1280, 800) as page:
        yield page


def test_bokeh_dashboard_renders_live_in_a_browser(
    embedded: RunningFacility, cluster: Cluster, browser_page: Any, artifacts: Path
) -> None:
    page = browser_page
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(ws.url)))
    page.goto(cluster.link)
    assert "/hub/login" in page.url  # no hub session yet
    page.fill("input[name=username]", OWNER)
    page.fill("input[name=password]", embedded.password_of(OWNER))
    page.click("#login_submit")
    page.wait_for_url(cluster.link)
    # bokeh draws its plots on canvases once its websocket session to the scheduler is up.
    # (in bokeh's shadow roots, which Playwright's selectors enter; the status page has a dozen)
    page.locator("canvas").nth(3).wait_for(state="attached")
    page.wait_for_timeout(1500)  # a few live updates
    shots = artifacts / "dashboard"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir()
    page.screenshot(path=shots / "status-through-hub.png")
    ws_url = cluster.link.replace("http", "ws", 1) + "/ws"
    assert frames and all(url == ws_url for url in frames), frames[:3]
    assert len(frames) > 2, "bokeh's websocket carried no updates"
    assert re.search(r"Dask", page.title())


def _start_batch_system(kind: str) -> Any:
    """A real single-node Slurm or HTCondor pool (tests/slurm_cluster.py, tests/htcondor_pool.py)."""
    if kind == "slurm":
        reason = unavailable_reason()
        if reason:
            pytest.skip(reason)
        return SlurmCluster().start()
    pool = HTCondorPool()
    reason = pool.unusable_reason()
    if reason:
        pytest.skip(reason)
    pool.start()
    return pool


@pytest.fixture(scope="module", params=["slurm", "htcondor"])
def batch_facility(request: pytest.FixtureRequest, start_facility) -> Iterator[RunningFacility]:
    """The embedded facility plus a backend `batch` on a real batch system."""
    system = _start_batch_system(request.param)
    try:
        raw = copy.deepcopy(embedded_raw())
        raw["backends"].append(system.backend_entry("batch"))
        running = start_facility(raw)
        yield running
        start_facility.stop(running)  # before its batch system goes
    finally:
        system.stop()
        if request.param == "htcondor":
            system.remove_job_dir()


def test_dashboard_of_a_batch_cluster_is_its_owners_only(batch_facility: RunningFacility) -> None:
    owner, other = batch_facility.login(OWNER), batch_facility.login(OTHER)
    address = batch_facility.runtime["gateways"]["batch"]["url"]
    base = f"{batch_facility.url}/services/dask-dashboards/batch"
    gateway = Gateway(address, public_address=base, auth=JupyterHubAuth(api_token=owner.token()))
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
    try:
        cluster.scale(1)
        with cluster.get_client(set_as_default=False) as client:
            client.wait_for_workers(1, timeout=120)
            info = client.scheduler_info()
        assert cluster.dashboard_link == f"{base}/clusters/{cluster.name}/status"
        page = owner.http.get(cluster.dashboard_link, timeout=60)
        assert page.status_code == 200 and "bokeh" in page.text  # the scheduler's job got its key
        refused = other.http.get(cluster.dashboard_link, timeout=60)
        assert refused.status_code == 404 and f"You ({OTHER}) have no running Dask cluster" in refused.text
        assert requests.get(f"{address}/clusters/{cluster.name}/status", timeout=30).status_code == 403
        # Their own ports, on the node's address where they listen (backends.common.node_address).
        ports = [(info["address"], info["services"]["dashboard"])]
        ports += [(address, worker["services"]["dashboard"]) for address, worker in info["workers"].items()]
        for address, port in ports:
            url = f"http://{get_address_host(address)}:{port}/health"
            assert requests.get(url, timeout=30).status_code == 403, url
    finally:
        cluster.shutdown()
        gateway.close()
