"""Issue 20 on Kubernetes: one quota across a user's notebook server and Dask clusters, enforced by
the chart's hub and the chart's dask-gateway, both running for real against the tests' API server.

The chart is rendered with facility.yaml quotas and applied (tests/kube_dask_gateway.install_chart);
its hub runs from the chart's own configuration (tests/kube_chart_hub.py) and dask-gateway's API
server and controller as the chart configures them, users logging in through that hub. No kubelet:
a node that only reports says the pods run (tests/kube_dask_gateway.ReportingNode).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml
from dask_gateway import Gateway, JupyterHubAuth

from tests.harness import free_port_block
from tests.kube_chart_hub import RunningHub, chart_hub
from tests.kube_control_plane import ControlPlane, module_control_plane
from tests.kube_dask_gateway import (
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

NAMESPACE = "analysis"
QUOTAS = {"default": {"cores": 4, "clusters": 1}}


@dataclass
class Facility:
    plane: ControlPlane
    hub: RunningHub
    gateway: RunningGateway


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["facility"]
    raw["quotas"] = QUOTAS
    folder = tmp_path_factory.mktemp("chart")
    gateway_port = free_port_block()
    with module_control_plane(tmp_path_factory) as plane:
        chart = install_chart(plane, NAMESPACE, {"facility": raw})
        with (
            reporting_node(plane, "af-node-1"),
            chart_hub(chart, folder / "hub", {"cloud": f"http://127.0.0.1:{gateway_port}"}) as hub,
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
        assert first in message, message
        wait_for(lambda: [c for c in gateway.list_clusters() if c.name == first], "alice's first cluster listed")
        assert len(gateway.list_clusters()) == 1
        gateway.stop_cluster(first)


def test_adaptive_scaling_is_capped_and_the_charts_hub_refuses_a_server_past_the_quota(facility: Facility) -> None:
    plane, hub, running = facility.plane, facility.hub, facility.gateway
    token = hub.user_token("bob")
    with Gateway(address=running.url, auth=JupyterHubAuth(api_token=token)) as gateway:
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
        assert f"Dask cluster {full_name} on 'cloud' (2 workers: 4 cores" in message, message
        assert hub.api("GET", "/users/bob").json()["servers"] == {}
        gateway.stop_cluster(full_name)
