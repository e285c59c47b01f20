"""A Dask cluster stops with its owner's notebook server (issue 19), on the real facility.

alice has a notebook server and clusters on the local backend's gateway; bob has a cluster too.
A restart of the hub stops nothing. Stopping alice's server through the hub's API stops her
plain cluster; the one she started with the cluster option `outlive_server=True` keeps running
and still computes; bob's cluster is untouched. The hub's home page (a real browser) says when
clusters still run without a server. Screenshots go to test-artifacts/cluster-lifetime/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_gateway import Gateway, JupyterHubAuth

from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.harness import HubSession, RunningFacility, embedded_raw
from tests.supervision import supervisor, wait_for

pytestmark = [
    pytest.mark.side_facility,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pyproject [test])")


@pytest.fixture(scope="module")
def shots() -> Path:
    sync_api_or_skip()
    return emptied_artifacts("cluster-lifetime")


@pytest.fixture(scope="module")
def running(start_facility) -> RunningFacility:
    return start_facility(embedded_raw())


@pytest.fixture(scope="module")
def alice(running: RunningFacility) -> HubSession:
    session = running.login("alice")
    reply = session.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    session.wait_ready()
    return session


def _gateway(running: RunningFacility, session: HubSession) -> Gateway:
    return Gateway(running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=session.token()))


@pytest.fixture(scope="module")
def alice_gateway(running: RunningFacility, alice: HubSession) -> Iterator[Gateway]:
    with _gateway(running, alice) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def bob_gateway(running: RunningFacility) -> Iterator[Gateway]:
    with _gateway(running, running.login("bob")) as gateway:
        yield gateway


def live(gateway: Gateway) -> set[str]:
    return {c.name for c in gateway.list_clusters()}  # pending or running


def test_hub_restart_does_not_stop_clusters(running: RunningFacility, alice: HubSession, alice_gateway) -> None:
    cluster = alice_gateway.new_cluster(shutdown_on_close=False)
    assert "hub: stopped" in supervisor(running, "restart", "hub")
    wait_for(lambda: (alice.server() or {}).get("ready"), "the restarted hub to list alice's server")
    time.sleep(2)  # a stop reported by the restart would have reached the gateway by now
    assert cluster.name in live(alice_gateway)
    alice_gateway.stop_cluster(cluster.name)


def test_cluster_stops_with_its_server_unless_marked(alice: HubSession, alice_gateway, bob_gateway) -> None:
    plain = alice_gateway.new_cluster(shutdown_on_close=False)
    kept = alice_gateway.new_cluster(outlive_server=True, shutdown_on_close=False)
    bobs = bob_gateway.new_cluster(shutdown_on_close=False)
    try:
        alice.stop_server()
        assert alice.server() is None
        wait_for(lambda: plain.name not in live(alice_gateway), "alice's plain cluster to stop", timeout=30)
        assert kept.name in live(alice_gateway), "the cluster marked outlive_server=True was stopped"
        assert bobs.name in live(bob_gateway), "bob's cluster was stopped with alice's server"
        # The kept cluster still computes.
        kept.scale(1)
        with kept.get_client(set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, range(10)).result(timeout=30) == 45
    finally:
        for gateway, cluster in ((alice_gateway, kept), (bob_gateway, bobs), (alice_gateway, plain)):
            gateway.stop_cluster(cluster.name)


def test_a_refused_server_leaves_the_users_clusters_running(running: RunningFacility) -> None:
    """The hub runs the post-stop hook for a spawn it refuses too; bob's cluster, started with a
    token while he has no server, must not stop because he asked for more than he may have."""
    bob = running.login("bob")
    with _gateway(running, bob) as gateway:
        cluster = gateway.new_cluster(shutdown_on_close=False)
        try:
            reply = bob.api("POST", "/users/bob/server", json={"backend": "local", "cores": 999})
            assert reply.status_code == 400 and "Cannot start your server" in reply.json()["message"], reply.text
            assert bob.server() is None
            time.sleep(2)  # a stop asked for by the hook would have reached the gateway by now
            assert cluster.name in live(gateway), "bob's cluster stopped with a server he was refused"
        finally:
            gateway.stop_cluster(cluster.name)


def test_home_page_says_which_clusters_still_run(running: RunningFacility, shots: Path) -> None:
    """carol has no server but a cluster: /hub/home says so in plain words, and not once it stopped."""
    with _gateway(running, running.login("carol")) as gateway, chromium_page(1280, 800) as page:
        cluster = gateway.new_cluster(shutdown_on_close=False)
        try:
            log_in(page, running.url, "carol", running.password_of("carol"))
            page.goto(f"{running.url}/hub/home")
            note = page.locator("#af-lingering-clusters")
            sync_api.expect(note).to_be_visible(timeout=30_000)
            sync_api.expect(note).to_contain_text(
                "Your notebook server is stopped, but you still have 1 Dask cluster running: 1 on backend 'local'"
            )
            page.screenshot(path=shots / "01-home-cluster-still-running.png", full_page=True)
        finally:
            gateway.stop_cluster(cluster.name)
        wait_for(lambda: cluster.name not in live(gateway), "carol's cluster to stop", timeout=30)
        page.reload()
        page.wait_for_load_state("networkidle")
        assert page.locator("#af-lingering-clusters").is_hidden()
        page.screenshot(path=shots / "02-home-no-cluster.png", full_page=True)
