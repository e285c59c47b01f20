"""Issue 21: a real Kubernetes control plane (tests/kube_control_plane.py), and the chart in it.

Stage 1: the API server answers with the pinned version, RBAC and service-account tokens work, the
controller-manager turns a Deployment into a ReplicaSet and a Pod, and the scheduler binds the
Pod to a registered Node. No kubelet runs, so no Pod ever starts.

Stage 2, first part: every object the chart renders is accepted by the API server (server-side
apply: its validation and admission, stricter than a schema check), and the hub's own
ServiceAccount may do what KubeSpawner does and is refused the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from jupyterhub import orm
from kubernetes_asyncio.config import kube_config
from traitlets.config import Config

import facility
from hub_config import children
from tests.kube_control_plane import (
    VERSION,
    ControlPlane,
    apply,
    module_control_plane,
    resource_url,
    service_account_token,
)
from tests.kube_helpers import (
    CHART_DIR,
    hub_spawner,
    hub_user,
    metrics_values,
    render_objects,
    site_raw,
    with_local_cvmfs,
)

pytestmark = pytest.mark.no_facility

NAMESPACE = "af-stage-one"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with module_control_plane(tmp_path_factory) as started:
        yield started


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


def test_the_api_server_is_the_pinned_release_and_stores_objects(plane: ControlPlane) -> None:
    http = plane.session()
    assert http.get(f"{plane.url}/version", timeout=10).json()["gitVersion"] == VERSION
    created = http.post(f"{plane.url}/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}, timeout=10)
    assert created.status_code == 201, created.text
    # The API server validates: a ConfigMap whose name breaks the DNS rules is refused in words.
    bad = http.post(
        f"{plane.url}/api/v1/namespaces/{NAMESPACE}/configmaps",
        json={"metadata": {"name": "no;shell"}, "data": {}},
        timeout=10,
    )
    assert bad.status_code == 422 and "a lowercase RFC 1123 subdomain" in bad.json()["message"], bad.text


def _grant_pod_reading(plane: ControlPlane, account: str) -> str:
    """A ServiceAccount allowed to list pods in NAMESPACE, and a token for it (TokenRequest API)."""
    http = plane.session()
    base = f"{plane.url}/api/v1/namespaces/{NAMESPACE}"
    rbac = f"{plane.url}/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    for url, body in (
        (f"{base}/serviceaccounts", {"metadata": {"name": account}}),
        (
            f"{rbac}/roles",
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get"]}],
            },
        ),
        (
            f"{rbac}/rolebindings",
            {
                "metadata": {"name": f"{account}-reads-pods"},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            },
        ),
    ):
        answer = http.post(url, json=body, timeout=10)
        assert answer.status_code == 201, answer.text
    token = http.post(f"{base}/serviceaccounts/{account}/token", json={"spec": {"expirationSeconds": 600}}, timeout=10)
    assert token.status_code == 201, token.text
    return token.json()["status"]["token"]


def test_service_account_tokens_are_held_to_their_role(plane: ControlPlane) -> None:
    token = _grant_pod_reading(plane, "reader")
    http = plane.session(token=token)
    base = f"{plane.url}/api/v1/namespaces/{NAMESPACE}"
    assert http.get(f"{base}/pods", timeout=10).status_code == 200
    refused = http.get(f"{base}/secrets", timeout=10)
    assert refused.status_code == 403, refused.text
    assert 'system:serviceaccount:af-stage-one:reader" cannot list resource "secrets"' in refused.json()["message"]
    elsewhere = http.get(f"{plane.url}/api/v1/namespaces/default/pods", timeout=10)
    assert elsewhere.status_code == 403, elsewhere.text
    forged = plane.session(token=token[:-4] + "AAAA")  # a token whose signature does not verify
    assert forged.get(f"{base}/pods", timeout=10).status_code == 401


def test_controllers_and_scheduler_place_a_deployments_pod_on_a_node(plane: ControlPlane) -> None:
    http = plane.session()
    node = {
        "metadata": {"name": "af-test-node", "labels": {"kubernetes.io/hostname": "af-test-node"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node"}],
        },
    }
    created = http.post(f"{plane.url}/api/v1/nodes", json=node, timeout=10)
    assert created.status_code == 201, created.text
    # The Node's status is a subresource: a create ignores it, so it is set the way a kubelet does.
    status = http.patch(
        f"{plane.url}/api/v1/nodes/af-test-node/status",
        json={"status": node["status"]},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    )
    assert status.status_code == 200, status.text
    deployment = {
        "metadata": {"name": "hello"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {
                    "containers": [
                        {
                            "name": "hello",
                            "image": "registry.example.org/hello:1",
                            "resources": {"requests": {"cpu": "1"}},
                        }
                    ]
                },
            },
        },
    }
    apps = f"{plane.url}/apis/apps/v1/namespaces/{NAMESPACE}"
    assert http.post(f"{apps}/deployments", json=deployment, timeout=10).status_code == 201

    def pods() -> list[dict[str, Any]]:
        return http.get(f"{plane.url}/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3Dhello", timeout=10).json()[
            "items"
        ]

    # kube-controller-manager: Deployment -> ReplicaSet -> Pod.
    eventually(lambda: http.get(f"{apps}/replicasets", timeout=10).json()["items"], "a ReplicaSet")
    eventually(pods, "a Pod of the ReplicaSet")
    # kube-scheduler: the Pod bound to the only Node that fits.
    bound = eventually(lambda: [p for p in pods() if p["spec"].get("nodeName")], "the Pod bound to a Node")
    assert bound[0]["spec"]["nodeName"] == "af-test-node"
    conditions = {c["type"]: c["status"] for c in bound[0]["status"].get("conditions", [])}
    assert conditions.get("PodScheduled") == "True", bound[0]["status"]


# -- stage 2, first part: the chart's objects in the real API server ----------------------------
CHART_NAMESPACE = "analysis"


@pytest.fixture(scope="module")
def installed_chart(plane: ControlPlane) -> list[dict[str, Any]]:
    """The chart rendered by Helm's engine (metrics on) and applied server-side, object by object."""
    chart = helm.Chart.load(CHART_DIR)
    objects = render_objects(chart, metrics_values())
    http = plane.session()
    created = http.post(f"{plane.url}/api/v1/namespaces", json={"metadata": {"name": CHART_NAMESPACE}}, timeout=10)
    assert created.status_code == 201, created.text
    # The controller-manager gives a new namespace its `default` ServiceAccount; pods need it.
    default_account = f"{plane.url}/api/v1/namespaces/{CHART_NAMESPACE}/serviceaccounts/default"
    eventually(lambda: http.get(default_account, timeout=10).status_code == 200, "the default ServiceAccount")
    for obj in objects:
        answer = apply(plane, obj, CHART_NAMESPACE, http)
        assert answer.status_code in (200, 201), f"{obj['kind']}/{obj['metadata']['name']}: {answer.text}"
    return objects


def test_the_api_server_accepts_every_object_of_the_chart(plane: ControlPlane, installed_chart) -> None:
    http = plane.session()
    for obj in installed_chart:
        stored = http.get(resource_url(plane, http, obj, CHART_NAMESPACE), timeout=10)
        assert stored.status_code == 200, (obj["kind"], obj["metadata"]["name"], stored.text)
    # The controllers act on what the chart made: the hub's Deployment gets its Pod, with the
    # facility exporter beside the hub (metrics are on).
    pods = f"{plane.url}/api/v1/namespaces/{CHART_NAMESPACE}/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dhub"
    hub_pods = eventually(lambda: http.get(pods, timeout=10).json()["items"], "the hub's Pod")
    assert [c["name"] for c in hub_pods[0]["spec"]["containers"]] == ["hub", "exporter"]
    assert hub_pods[0]["spec"]["serviceAccountName"] == "af-hub"


def test_the_hubs_service_account_may_do_what_kubespawner_does_and_nothing_more(
    plane: ControlPlane, installed_chart
) -> None:
    hub = plane.session(token=service_account_token(plane, CHART_NAMESPACE, "af-hub"))
    here = f"{plane.url}/api/v1/namespaces/{CHART_NAMESPACE}"
    dry_run = {"dryRun": "All"}  # the API server checks everything, then stores nothing
    pod = {
        "metadata": {"name": "jupyter-alice"},
        "spec": {"containers": [{"name": "notebook", "image": "registry.example.org/notebook:1"}]},
    }
    for kind, body in (
        ("pods", pod),
        ("persistentvolumeclaims", {"metadata": {"name": "claim-alice"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ("secrets", {"metadata": {"name": "jupyter-alice"}, "stringData": {"token": "x"}}),
        ("services", {"metadata": {"name": "jupyter-alice"}, "spec": {"ports": [{"port": 8888}]}}),
    ):  # fmt: skip
        made = hub.post(f"{here}/{kind}", params=dry_run, json=body, timeout=10)
        assert made.status_code == 201, (kind, made.text)
        assert hub.get(f"{here}/{kind}", timeout=10).status_code == 200, kind
    assert hub.get(f"{here}/events", timeout=10).status_code == 200
    # Outside its Role: other namespaces, nodes, workloads, roles.
    for url in (
        f"{plane.url}/api/v1/namespaces/default/pods",
        f"{plane.url}/api/v1/nodes",
        f"{plane.url}/apis/apps/v1/namespaces/{CHART_NAMESPACE}/deployments",
        f"{plane.url}/apis/rbac.authorization.k8s.io/v1/namespaces/{CHART_NAMESPACE}/roles",
    ):
        refused = hub.get(url, timeout=10)
        assert refused.status_code == 403, (url, refused.text)
    assert hub.patch(f"{here}/pods/jupyter-alice", json={}, timeout=10).status_code == 403  # no patch verb


# -- stage 2, second part: the hub's KubeSpawner against the real API server ----------------------
def test_kubespawner_with_the_hubs_token_makes_the_users_pod_and_removes_it(
    plane: ControlPlane, installed_chart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's spawner for the form's choice, with the chart's hub ServiceAccount token: the pod
    appears in the API server with the size and image chosen and the user's home claim (made on
    the first start), and stopping removes the pod and keeps the claim."""
    kubeconfig = plane.kubeconfig("hub", token=service_account_token(plane, CHART_NAMESPACE, "af-hub"))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    raw = with_local_cvmfs(site_raw(), tmp_path / "cvmfs")
    next(b for b in raw["backends"] if b["name"] == "cloud")["site"]["home_storage_gb"] = 5
    site = tmp_path / "facility.yaml"
    site.write_text(yaml.safe_dump(raw))
    config = Config()
    config.KubeSpawner.k8s_api_host = plane.url
    config.KubeSpawner.k8s_api_ssl_ca_cert = str(plane.ca.cert_file)
    config.KubeSpawner.start_timeout = 600  # no kubelet: the pod never runs, the test stops it first
    db = orm.new_session_factory("sqlite:///:memory:")()
    parent = hub_spawner(hub_user(db, "alice"), site, db, config)
    choice = {"backend": "cloud", "cores": 3, "memory_gb": 6, "image": "coffea-2026"}
    http = plane.session()
    pods = f"{plane.url}/api/v1/namespaces/{CHART_NAMESPACE}/pods"

    async def spawn_then_stop() -> dict[str, Any]:
        request = parent.validated(choice)
        fac = parent.facility
        parent.child_class, parent.child_config = children.child_for(fac, fac.backend(request.backend), request, parent)
        parent.construct_child()
        child = parent.child_spawner
        child.api_token = "token-the-hub-would-issue"  # noqa: S105 - set by the hub just before start
        starting = asyncio.ensure_future(child.start())
        deadline = time.monotonic() + 60
        while True:
            answer = await asyncio.to_thread(http.get, f"{pods}/{child.pod_name}", timeout=10)
            if answer.status_code == 200:
                break
            assert not starting.done(), starting.exception()
            assert time.monotonic() < deadline, f"no pod {child.pod_name}: {answer.text}"
            await asyncio.sleep(0.5)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await child.stop(now=True)
        return answer.json()

    # A loop of its own: KubeSpawner caches its API client per event loop, and other tests' spawners
    # (tests/test_kubernetes.py) made theirs for a server that never answers.
    pod = asyncio.run(spawn_then_stop())
    container = pod["spec"]["containers"][0]
    assert container["image"] == facility.load(site).image("coffea-2026").registry
    assert float(container["resources"]["limits"]["cpu"]) == 3
    assert int(container["resources"]["limits"]["memory"]) == 6 * 2**30
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AF_BACKEND"] == "cloud"
    # The API server refused containerPort 0 (the hub's "any port" linked onto the child) before.
    assert container["ports"] == [{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}]
    assert http.get(f"{pods}/{pod['metadata']['name']}", timeout=10).status_code == 404  # stopping removed it
    # The home: a claim of the size facility.yaml sets, mounted where the image's user lives.
    claims = f"{plane.url}/api/v1/namespaces/{CHART_NAMESPACE}/persistentvolumeclaims"
    claim = http.get(f"{claims}/home-alice", timeout=10)
    assert claim.status_code == 200, claim.text  # kept when the server stopped
    assert claim.json()["spec"]["resources"]["requests"]["storage"] == "5Gi"
    home = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"]["claimName"] == "home-alice"
    assert {"name": "home", "mountPath": "/home/analyst"} in container["volumeMounts"]
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000
