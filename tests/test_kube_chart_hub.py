"""The chart's hub and dask-gateway running for real against the tests' API server: a spawn from
the form through the chart's KubeSpawner (issue 21), and one quota across a user's notebook server
and Dask clusters (issue 20), and the pages issue 20 adds to the hub (the quota's words in the spawn form,
the home page's note on clusters, /hub/usage) as this hub serves them, in a real browser.

The chart is rendered with facility.yaml quotas and an offloaded GPU backend and applied
(tests/kube_dask_gateway.install_chart); its hub runs from the chart's own configuration with its
ServiceAccount's token (tests/kube_chart_hub.py), and dask-gateway's API server and controller as
the chart configures them, users logging in through that hub. No kubelet: a node that only reports
says the pods run (tests/kube_dask_gateway.ReportingNode); no interLink virtual node exists, so an
offloaded pod stays unplaced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from dask_gateway import Gateway, JupyterHubAuth

from facility.credentials import CredentialStore, credentials_path, generate_password
from facility.usage import UsageStore, usage_path
from tests.harness import cluster_title, free_port_block
from tests.kube_chart_hub import RunningHub, chart_hub
from tests.kube_control_plane import ControlPlane, module_control_plane, service_account_token
from tests.kube_dask_gateway import (
    NAMESPACE,
    RunningGateway,
    cluster_object,
    cluster_token,
    dask_gateway,
    heartbeat,
    install_chart,
    reporting_node,
    started_and_running,
    wait_for,
)
from tests.kube_helpers import CHART_DIR

pytestmark = [
    pytest.mark.no_facility,
    # dask_gateway.Gateway.__del__ closes a second time after close() (dask-gateway 2026.3): noise.
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

QUOTAS = {"default": {"cores": 4, "clusters": 1}}
START_TIMEOUT_S = 15  # how long the hub waits for a pod to run (facility.yaml hub.start_timeout_seconds)
# An offloaded GPU backend, as examples/site-facility.yaml's hpc-offload.
OFFLOADED = {
    "name": "hpc-offload",
    "kind": "kubernetes",
    "label": "HPC GPUs through interLink",
    "resources": {
        "cores": {"default": 8, "min": 1, "max": 32},
        "memory_gb": {"default": 32, "min": 4, "max": 256},
        "gpus": {"default": 1, "min": 0, "max": 4},
    },
    "gpu_types": ["a100", "h100"],
    "data_cache": "xcache",
    "site": {
        "namespace": "analysis",
        "offload": {
            "node_selector": {"kubernetes.io/role": "agent", "type": "virtual-kubelet"},
            "tolerations": [
                {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "slurm_flags": ["--qos=gpu"],
        },
    },
}


@dataclass
class Facility:
    plane: ControlPlane
    hub: RunningHub
    gateway: RunningGateway


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["facility"]
    raw["quotas"] = QUOTAS
    raw["backends"][0]["site"] = {"namespace": NAMESPACE}  # in the pod, the ServiceAccount's namespace
    raw["backends"].append(OFFLOADED)
    raw["hub"]["start_timeout_seconds"] = START_TIMEOUT_S
    raw["usage"] = {"sample_interval_seconds": 2}  # the hub's managed usage sampler, often
    raw["auth"]["admin_users"] = ["admin"]  # who may read /hub/usage in the browser test
    folder = tmp_path_factory.mktemp("chart")
    gateway_port = free_port_block()
    with module_control_plane(tmp_path_factory) as plane:
        chart = install_chart(plane, NAMESPACE, {"facility": raw})
        with (
            reporting_node(plane, "af-node-1"),
            chart_hub(
                chart,
                folder / "hub",
                {"cloud": f"http://127.0.0.1:{gateway_port}"},
                plane.kubeconfig("af-hub", token=service_account_token(plane, NAMESPACE, "af-hub")),
            ) as hub,
            dask_gateway(plane, NAMESPACE, chart, folder / "gateway", hub_api_url=hub.api_url, port=gateway_port) as gw,
        ):
            yield Facility(plane, hub, gw)


def test_the_charts_gateway_refuses_a_cluster_past_the_quota_naming_the_one_held(facility: Facility) -> None:
    token = facility.hub.user_token("alice")
    with Gateway(address=facility.gateway.url, auth=JupyterHubAuth(api_token=token)) as gateway:
        first = gateway.submit()
        with pytest.raises(Exception, match="would exceed your quota") as refused:
            gateway.submit()
        message = str(refused.value)
        assert "clusters 2 of at most 1" in message, message
        assert f"Dask cluster {cluster_title(gateway, first)} on 'cloud'" in message, message  # the name people see
        assert first not in message, message  # not its id
        wait_for(lambda: [c for c in gateway.list_clusters() if c.name == first], "alice's first cluster listed")
        assert len(gateway.list_clusters()) == 1
        gateway.stop_cluster(first)


def test_adaptive_scaling_is_capped_and_the_charts_hub_refuses_a_server_past_the_quota(facility: Facility) -> None:
    plane, hub, running = facility.plane, facility.hub, facility.gateway
    token = hub.user_token("bob")
    with Gateway(address=running.url, auth=JupyterHubAuth(api_token=token)) as gateway:
        # A plain cluster (not outliving a server): bob's refused spawn below must leave it running.
        full_name = started_and_running(plane, running, gateway, worker_cores=2, worker_memory_gb=2)
        name = full_name.split(".")[1]
        # The scheduler asks for 3 workers of 2 cores; 2 fit bob's 4 cores: the gateway sets 2.
        assert heartbeat(running, full_name, cluster_token(plane, name), 3).status_code == 200
        wait_for(
            lambda: cluster_object(plane, name)["spec"].get("replicas") == 2,
            "replicas capped at 2",
            explain=lambda: str(cluster_object(plane, name)["spec"].get("replicas")),
        )
        # His server would add a core: the chart's hub asks the chart's gateway what he holds, and refuses.
        options = {"backend": "cloud", "cores": 1, "memory_gb": 2, "image": "coffea-2026"}
        message = hub.spawn_message("bob", token, options)
        assert "Starting a notebook server on 'cloud' would exceed your quota" in message, message
        assert "cores 5 of at most 4" in message, message
        assert f"Dask cluster {cluster_title(gateway, full_name)} on 'cloud' (2 workers: 4 cores" in message, message
        assert hub.api("GET", "/users/bob").json()["servers"] == {}
        # An explicit scale-up past the quota (cluster.scale, not adaptive) is refused in words; still 2.
        with pytest.raises(Exception, match="At most 2 workers of this size fit") as refused:
            gateway.scale_cluster(full_name, 3)
        assert f"Scaling Dask cluster {cluster_title(gateway, full_name)} to 3 workers" in str(refused.value)
        assert cluster_object(plane, name)["spec"].get("replicas") == 2
        # Usage accounting: the sampler the chart's hub runs as a managed service reads the
        # gateway's clusters; bob's 2 workers of 2 cores accumulate core-seconds on 'cloud'.
        wait_for(
            lambda: cluster_core_seconds(hub, "bob") >= 8,
            "bob's cluster counted by the usage sampler",
            explain=hub.log_tail,
        )
        assert full_name in {c.name for c in gateway.list_clusters()}, "stopped with a server bob was refused"
        gateway.stop_cluster(full_name)


def cluster_core_seconds(hub: RunningHub, user: str) -> float:
    """The user's Dask clusters' core-seconds on 'cloud', as the usage sampler of the chart's hub recorded them."""
    store = UsageStore(usage_path(hub.state))
    rows = store.rows(users=[user]) if store.path.exists() else []
    return sum(r.core_seconds for r in rows if r.kind == "cluster" and r.backend == "cloud")


def test_the_charts_hub_spawns_an_offloaded_gpu_server_through_kubespawner_and_cleans_up(
    facility: Facility,
) -> None:
    """The form's choice for the offloaded GPU backend becomes a pod with the chart's hub token:
    sized, with a GPU of the chosen type, the interLink node selector, tolerations and the Slurm
    plugin's annotations. No virtual node exists here, so it is never placed: after the facility's
    start timeout the spawner gives up in words, naming why (kube-scheduler's event), and
    KubeSpawner removes the pod."""
    plane, hub = facility.plane, facility.hub
    token = hub.user_token("dana")
    options = {
        "backend": "hpc-offload",
        "cores": 2,
        "memory_gb": 8,
        "gpus": 1,
        "gpu_type": "a100",
        "image": "coffea-2026",
    }
    pods = f"{plane.url}/api/v1/namespaces/{NAMESPACE}/pods"
    http = plane.session()

    def danas_pods() -> list[dict[str, Any]]:
        return [p for p in http.get(pods, timeout=10).json()["items"] if p["metadata"]["name"] == "jupyter-dana"]

    message: list[str] = []
    spawning = threading.Thread(target=lambda: message.append(hub.spawn_message("dana", token, options, timeout=120)))
    spawning.start()
    (pod,) = wait_for(danas_pods, "dana's pod", timeout=60, explain=hub.log_tail)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == "2"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/role": "agent", "type": "virtual-kubelet"}
    assert {t["key"] for t in pod["spec"]["tolerations"]} >= {"virtual-node.interlink/no-schedule"}
    assert "--qos=gpu" in pod["metadata"]["annotations"]["slurm-job.vk.io/flags"]
    assert not pod["spec"].get("nodeName")  # no virtual node: kube-scheduler places it nowhere
    spawning.join(timeout=150)
    assert message, "the spawn neither ran nor failed"
    # In words (the hub's own timeout gives a bare "Spawn failed: "), with the scheduler's reason.
    assert f"did not start within {START_TIMEOUT_S} seconds, so it was stopped" in message[0], message[0]
    assert "HPC GPUs through interLink" in message[0], message[0]
    assert "node(s) didn't match Pod's node affinity/selector" in message[0], message[0]
    wait_for(lambda: not danas_pods(), "dana's pod removed after the failed start", timeout=60)
    assert hub.api("GET", "/users/dana").json()["servers"] == {}


def test_the_charts_hub_pages_read_right_in_a_browser(facility: Facility) -> None:
    """Issue 20's pages as the chart's own hub serves them, in Chromium. erin's cluster holds all 4
    cores of her quota and she has no server: her home page says the cluster still runs; the spawn
    form comes back refusing a server in words that name the cluster; /hub/usage refuses her in
    words. The admin's /hub/usage lists her cluster's core-hours (the hub's managed usage sampler)
    with a bar, its text readable in the light and the dark theme. Screenshots in
    test-artifacts/chart-hub/."""
    from tests.browser import chromium_page, contrast_of, emptied_artifacts, log_in, sync_api_or_skip

    expect = sync_api_or_skip().expect
    plane, hub, running = facility.plane, facility.hub, facility.gateway
    shots = emptied_artifacts("chart-hub")
    passwords = {name: generate_password() for name in ("erin", "admin")}
    for name, password in passwords.items():  # as `af user add` would in the hub pod
        CredentialStore(credentials_path(hub.state)).set(name, password)
    token = hub.user_token("erin")
    with Gateway(address=running.url, auth=JupyterHubAuth(api_token=token)) as gateway:
        full_name = started_and_running(plane, running, gateway, worker_cores=2, worker_memory_gb=2)
        name = full_name.split(".")[1]
        try:
            assert heartbeat(running, full_name, cluster_token(plane, name), 2).status_code == 200
            wait_for(lambda: cluster_object(plane, name)["spec"].get("replicas") == 2, "erin's 2 workers")
            with chromium_page(1280, 900) as page:
                log_in(page, hub.url, "erin", passwords["erin"])
                page.goto(f"{hub.url}/hub/home")
                expect(page.locator("#af-lingering-clusters")).to_contain_text(
                    "Your notebook server is stopped, but you still have 1 Dask cluster running: "
                    "1 on backend 'cloud' (idle clusters there stop after",
                    timeout=30_000,
                )
                expect(page.locator("nav a.nav-link", has_text="Usage")).to_have_count(0)  # the admin's link only
                page.screenshot(path=shots / "01-home-a-cluster-without-a-server.png", full_page=True)
                page.goto(f"{hub.url}/hub/spawn")
                expect(page.locator("#af-cloud-cores")).to_have_value("1")
                page.click('form button[type="submit"]')
                body = page.locator("body")
                expect(body).to_contain_text(
                    "Starting a notebook server on 'cloud' would exceed your quota (cores 5 of at most 4 on all "
                    "backends)",
                    timeout=30_000,
                )
                held = f"You hold: Dask cluster {cluster_title(gateway, full_name)} on 'cloud' (2 workers: 4 cores"
                expect(body).to_contain_text(held)
                expect(body).not_to_contain_text("HTTP 403")  # words for a person, not a status code
                page.screenshot(path=shots / "02-spawn-form-over-quota.png", full_page=True)
                page.goto(f"{hub.url}/hub/usage")
                expect(body).to_contain_text("The usage page is for the facility's admins")
                page.screenshot(path=shots / "03-usage-refused-to-a-user.png", full_page=True)
            wait_for(lambda: cluster_core_seconds(hub, "erin") > 0, "erin's cluster recorded", explain=hub.log_tail)
            with chromium_page(1280, 800) as page:
                log_in(page, hub.url, "admin", passwords["admin"])
                for scheme in ("light", "dark"):
                    page.emulate_media(color_scheme=scheme)
                    page.goto(f"{hub.url}/hub/home")
                    page.locator("nav a.nav-link", has_text="Usage").click()  # the admin's link to it
                    expect(page.locator("h1")).to_have_text("Usage")
                    assert page.evaluate("document.documentElement.getAttribute('data-bs-theme')") == scheme
                    row = page.locator("#af-usage-table tbody tr", has_text="erin")
                    expect(row).to_have_count(1)
                    for cell in ("td", "td.num"):
                        ratio = contrast_of(row.locator(cell))
                        assert ratio >= 4.5, f"{scheme}: {cell} contrast {ratio:.2f}"
                    assert row.locator(".af-usage-bar").bounding_box()["width"] > 0
                    page.screenshot(path=shots / f"04-usage-for-the-admin-{scheme}.png", full_page=True)
        finally:
            gateway.stop_cluster(full_name)
