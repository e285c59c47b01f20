"""Issue 21, stage 2: dask-gateway's Kubernetes backend and controller against a real API server.

The chart's objects are applied to the tests' control plane (tests/kube_control_plane.py), with
what dask-gateway's own chart would add (tests/kube_dask_gateway.py says which parts are written
here and why). dask-gateway's API server, configured by the chart's values, and its KubeController
then run with their ServiceAccounts' tokens. A user's cluster goes the whole way a cluster goes in
a real deployment up to the containers: DaskCluster object, credentials, scheduler pod, service,
Traefik routes, worker pods sized by facility.yaml, and everything removed when it stops. No
container runs (no kubelet); a node that only reports says the pods run, and the test sends the
heartbeat a running scheduler would send, with the token the controller made for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from dask_gateway import BasicAuth, Gateway

from facility import ledger
from facility.runtime import GatewayAddress
from hub_config.cluster_lifetime import stop_clusters_hook
from tests.kube_control_plane import ControlPlane, module_control_plane, service_account_token
from tests.kube_dask_gateway import (
    CRD,
    GATEWAY_ACCOUNT,
    NAMESPACE,
    RunningGateway,
    cluster_object,
    cluster_token,
    dask_gateway,
    heartbeat,
    install_chart,
    objects,
    reporting_node,
    secret_value,
    started_and_running,
    wait_for,
)
from tests.kube_helpers import metrics_values

pytestmark = [
    pytest.mark.no_facility,
    # dask_gateway.Gateway.__del__ closes a second time after close() (dask-gateway 2026.3): noise.
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

PASSWORD = "gateway-test-password"  # noqa: S105 - dask-gateway's password login, this test only
FACILITY_IMAGE = "registry.example.org/analysis-facility/notebook:2026.9"  # the chart's default facility


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with module_control_plane(tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def running(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    chart = install_chart(plane, NAMESPACE, metrics_values())  # metrics on: the gateway's /api/metrics too
    folder = tmp_path_factory.mktemp("dask-gateway")
    with reporting_node(plane, "af-node-1"), dask_gateway(plane, NAMESPACE, chart, folder, PASSWORD) as gateway:
        yield gateway


def client(running: RunningGateway, user: str) -> Gateway:
    return Gateway(address=running.url, auth=BasicAuth(user, PASSWORD))


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_a_users_cluster_goes_from_the_gateway_through_the_controller_to_sized_pods(
    plane: ControlPlane, running: RunningGateway
) -> None:
    with client(running, "alice") as gateway:
        options = gateway.cluster_options()
        options.worker_cores = 2
        options.worker_memory_gb = 4
        full_name = gateway.submit(cluster_options=options)
        namespace, name = full_name.split(".")
        assert namespace == NAMESPACE

        # The gateway's DaskCluster object carries the facility's settings for this cluster.
        spec = cluster_object(plane, name)["spec"]
        assert spec["username"] == "alice"
        assert spec["config"]["image"] == FACILITY_IMAGE
        assert spec["config"]["worker_cores_limit"] == 2.0
        assert spec["config"]["worker_memory_limit"] == 4 * 2**30
        assert spec["config"]["cluster_max_workers"] == 20

        # The controller: credentials and the scheduler's pod, bound to the node by kube-scheduler.
        (secret,) = wait_for(lambda: objects(plane, "api/v1/namespaces/{ns}/secrets", name), "the credentials")
        (scheduler,) = wait_for(
            lambda: [p for p in objects(plane, "api/v1/namespaces/{ns}/pods", name) if p["spec"].get("nodeName")],
            "the scheduler pod on a node",
            process=running.controller,
            explain=lambda: str([p["status"] for p in objects(plane, "api/v1/namespaces/{ns}/pods", name)]),
        )
        container = scheduler["spec"]["containers"][0]
        assert container["image"] == FACILITY_IMAGE
        assert container["args"][:2] == ["dask", "scheduler"], container["args"]
        assert "cvmfs" in {v["name"] for v in scheduler["spec"]["volumes"]}
        assert env_of(scheduler)["DASK_GATEWAY_CLUSTER_NAME"] == full_name

        # The node says it runs: service, endpoints, Traefik's routes, and the cluster is Running.
        def phase() -> str:
            return cluster_object(plane, name).get("status", {}).get("phase", "")

        wait_for(lambda: phase() == "Running", "the cluster Running", timeout=90, process=running.controller)
        assert objects(plane, "api/v1/namespaces/{ns}/services", name)
        assert objects(plane, "apis/traefik.io/v1alpha1/namespaces/{ns}/ingressroutes", name)
        assert objects(plane, "apis/traefik.io/v1alpha1/namespaces/{ns}/ingressroutetcps", name)
        report = wait_for(
            lambda: [c for c in gateway.list_clusters() if c.name == full_name], "the gateway lists the cluster"
        )
        assert report[0].status.name == "RUNNING"
        with client(running, "bob") as other:
            assert other.list_clusters() == []

        # The scheduler asks for two workers: the gateway sets the replicas, the controller makes
        # two worker pods with the sizes the user chose (requests equal limits: a guaranteed share).
        token = secret_value(secret, "api-token")
        assert heartbeat(running, full_name, "not-the-token", 2).status_code == 401
        assert heartbeat(running, full_name, token, 2).status_code == 200
        workers = wait_for(
            lambda: (
                [p for p in objects(plane, "api/v1/namespaces/{ns}/pods", name) if "worker" in p["metadata"]["name"]]
                if len(objects(plane, "api/v1/namespaces/{ns}/pods", name)) == 3
                else []
            ),
            "two worker pods",
            process=running.controller,
        )
        for worker in workers:
            resources = worker["spec"]["containers"][0]["resources"]
            assert resources["limits"]["cpu"] in ("2", "2.0", 2), resources
            assert resources["requests"] == resources["limits"], resources
            assert worker["spec"]["containers"][0]["image"] == FACILITY_IMAGE
            env = env_of(worker)
            # facility.yaml's data path reaches the workers: the cloud backend reads through its XCache.
            assert env["AF_DATA_CACHE"] == "root://xcache:1094", env
            assert env["AF_BACKEND"] == "cloud"
            assert "MALLOC_TRIM_THRESHOLD_" in env["DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"]

        # Stopping removes everything the controller made; the object says Stopped.
        gateway.stop_cluster(full_name)
        wait_for(lambda: phase() == "Stopped", "the cluster Stopped", process=running.controller)
        owned = (
            "api/v1/namespaces/{ns}/pods",
            "api/v1/namespaces/{ns}/secrets",
            "api/v1/namespaces/{ns}/services",
            "apis/traefik.io/v1alpha1/namespaces/{ns}/ingressroutes",
            "apis/traefik.io/v1alpha1/namespaces/{ns}/ingressroutetcps",
        )
        wait_for(
            lambda: not any(objects(plane, path, name) for path in owned),
            "the cluster's pods, credentials, service and routes removed",
            explain=lambda: str({path: len(objects(plane, path, name)) for path in owned}),
        )


def test_options_beyond_the_facilitys_limits_are_refused_in_words(plane: ControlPlane, running: RunningGateway) -> None:
    with client(running, "alice") as gateway:
        options = gateway.cluster_options()
        with pytest.raises(ValueError, match="worker_cores"):
            options.worker_cores = 64  # the client checks first, from the server's own limits
        before = plane.session().get(f"{plane.url}/{CRD}/namespaces/{NAMESPACE}/daskclusters", timeout=10).json()
        # A client that does not check: the gateway refuses, saying which limit.
        refused = requests.post(
            f"{running.url}/api/v1/clusters/",
            json={"cluster_options": {"worker_memory_gb": 64}},
            auth=("alice", PASSWORD),
            timeout=10,
        )
        assert refused.status_code == 422, refused.text
        assert "worker_memory_gb must be <= 16" in refused.text
        after = plane.session().get(f"{plane.url}/{CRD}/namespaces/{NAMESPACE}/daskclusters", timeout=10).json()
        assert len(after["items"]) == len(before["items"]), "a refused request made a DaskCluster"


def test_the_gateways_account_makes_cluster_objects_but_no_pods(plane: ControlPlane, running: RunningGateway) -> None:
    gateway = plane.session(token=service_account_token(plane, NAMESPACE, GATEWAY_ACCOUNT))
    dry_run = {"dryRun": "All"}
    pod = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": FACILITY_IMAGE}]}}
    made = gateway.post(f"{plane.url}/api/v1/namespaces/{NAMESPACE}/pods", params=dry_run, json=pod, timeout=10)
    assert made.status_code == 403, made.text
    listing = gateway.get(f"{plane.url}/{CRD}/namespaces/{NAMESPACE}/daskclusters", timeout=10)
    assert listing.status_code == 200, listing.text


def test_the_hub_sees_a_users_clusters_here_and_her_servers_end_stops_them(
    plane: ControlPlane, running: RunningGateway
) -> None:
    """The facility's routes on the chart's gateway, called by the hub's own code: the quota
    ledger's listing, usage accounting's sample, and the post-stop hook that stops the clusters not
    made to outlive it."""
    hub_view = {"cloud": (running.url, running.hub_token)}
    with client(running, "carol") as gateway:
        ephemeral = started_and_running(plane, running, gateway, worker_cores=3, worker_memory_gb=6)
        kept = started_and_running(plane, running, gateway, outlive_server=True)
        token = secret_value(
            wait_for(lambda: objects(plane, "api/v1/namespaces/{ns}/secrets", ephemeral.split(".")[1]), "credentials")[
                0
            ],
            "api-token",
        )
        assert heartbeat(running, ephemeral, token, 3).status_code == 200

        def held() -> dict[str, Any]:
            return {h.name: h for h in asyncio.run(ledger.gateway_clusters(hub_view, "carol"))}

        holdings = wait_for(lambda: held()[ephemeral].cores == 9 and held(), "the ledger sees 3 workers")
        assert set(holdings) == {ephemeral, kept}
        assert holdings[ephemeral].memory_gb == 18
        assert asyncio.run(ledger.gateway_clusters(hub_view, "dave")) == []
        # Usage accounting's sample (facility.usage): every user's clusters with their running workers.
        sampled = {h.name: h for h in asyncio.run(ledger.running_clusters(hub_view))["carol"]}
        assert sampled[ephemeral].cores == 9
        with pytest.raises(ledger.LedgerUnavailable):  # another token: the route refuses, the ledger says so
            asyncio.run(ledger.gateway_clusters({"cloud": (running.url, "not-the-hub")}, "carol"))

        # The hub's post_stop_hook, as JupyterHub calls it when carol's server stops.
        hook = stop_clusters_hook(
            {"cloud": GatewayAddress(kind="kubernetes", url=running.url, api_token=running.hub_token)}
        )
        asyncio.run(hook(SimpleNamespace(user=SimpleNamespace(name="carol"))))

        def phase(full_name: str) -> str:
            return cluster_object(plane, full_name.split(".")[1]).get("status", {}).get("phase", "")

        wait_for(lambda: phase(ephemeral) == "Stopped", "carol's ephemeral cluster stopped", process=running.controller)
        assert phase(kept) == "Running"
        assert set(held()) == {kept}
        gateway.stop_cluster(kept)
        wait_for(lambda: phase(kept) == "Stopped", "the kept cluster stopped by carol")


def test_prometheus_reads_the_gateways_metrics_with_the_charts_scrape_token(
    plane: ControlPlane, running: RunningGateway
) -> None:
    """With metrics enabled the chart's gateway answers /api/metrics to the scrape token the chart
    gives Prometheus (Secret <release>-prometheus-tokens, key scrape-token), and no one else."""
    tokens = plane.session().get(f"{plane.url}/api/v1/namespaces/{NAMESPACE}/secrets/af-prometheus-tokens", timeout=10)
    scrape_token = secret_value(tokens.json(), "scrape-token")
    metrics = f"{running.url}/api/metrics"
    assert requests.get(metrics, timeout=10).status_code in (401, 403)
    assert requests.get(metrics, headers={"Authorization": "Bearer not-it"}, timeout=10).status_code in (401, 403)
    with client(running, "erin") as gateway:
        full_name = started_and_running(plane, running, gateway, worker_cores=2, worker_memory_gb=2)
        assert heartbeat(running, full_name, cluster_token(plane, full_name.split(".")[1]), 2).status_code == 200

        def sample() -> dict[str, float]:
            answer = requests.get(metrics, headers={"Authorization": f"Bearer {scrape_token}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            return {
                line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in answer.text.splitlines()
                if line and not line.startswith("#")
            }

        values = wait_for(lambda: sample().get("af_gateway_worker_cores", 0) >= 4 and sample(), "4 worker cores")
        assert values['af_gateway_clusters{status="running"}'] >= 1
        assert values['af_gateway_workers{status="running"}'] >= 2
        gateway.stop_cluster(full_name)
