"""dask-gateway on the tests' real Kubernetes control plane (tests/kube_control_plane.py).

What dask-gateway's Helm chart would install beside this project's chart, which cannot be
downloaded here (helm dependency build has no route to helm.dask.org):
- the DaskCluster CRD. dask-gateway ships it only in that chart; it is a schema-less CRD
  (`x-kubernetes-preserve-unknown-fields`, dask-gateway#434), written out below.
- Traefik's IngressRoute and IngressRouteTCP CRDs, from Traefik's own module
  (scripts/test-install.d/60-kubernetes.sh puts them beside the binaries).
- the gateway's and the controller's ServiceAccounts and RBAC, with the rules of the chart's
  templates/gateway/rbac.yaml and templates/controller/rbac.yaml (dask-gateway 2026.3.0).
The gateway and dask-gateway's own KubeController then run as processes on this host, each with
its ServiceAccount's token, as their pods would; the gateway loads this project's chart values
(the `analysis-facility-config` ConfigMap and the `extraConfig` of values.yaml).

There is no kubelet. `ReportingNode` plays the part of one that only reports: it keeps a Node's
lease fresh and says the pods bound to it run. No container runs; the controller and the
gateway act on what the API server tells them, as they would in a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import requests
import yaml

from backends.kubernetes.pods import CVMFS_CLAIM
from tests.harness import free_port_block
from tests.kube_control_plane import BIN, ControlPlane, apply, service_account_token
from tests.kube_helpers import CHART_DIR, ROOT, render_objects

DASK_GATEWAY_SERVER = Path(sys.executable).with_name("dask-gateway-server")
TRAEFIK_CRDS = BIN.parent / "crds"
GATEWAY_INSTANCE = "af-dask-gateway"
NAMESPACE = "analysis"  # where the tests install the chart
CRD = "apis/gateway.dask.org/v1alpha1"
GATEWAY_ACCOUNT = "af-dask-gateway-api"
CONTROLLER_ACCOUNT = "af-dask-gateway-controller"

DASKCLUSTER_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "daskclusters.gateway.dask.org"},
    "spec": {
        "group": "gateway.dask.org",
        "names": {
            "kind": "DaskCluster",
            "listKind": "DaskClusterList",
            "plural": "daskclusters",
            "singular": "daskcluster",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}

# The rules of dask-gateway's chart, templates/gateway/rbac.yaml and templates/controller/rbac.yaml.
GATEWAY_RULES = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["gateway.dask.org"], "resources": ["daskclusters"], "verbs": ["*"]},
]
CONTROLLER_RULES = [
    {"apiGroups": ["gateway.dask.org"], "resources": ["daskclusters", "daskclusters/status"], "verbs": ["*"]},
    {
        "apiGroups": ["traefik.io"],
        "resources": ["ingressroutes", "ingressroutetcps"],
        "verbs": ["get", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets", "services"], "verbs": ["create", "delete"]},
]


def _account_objects(name: str, namespace: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            "roleRef": {"kind": "ClusterRole", "name": name, "apiGroup": "rbac.authorization.k8s.io"},
        },
    ]


def traefik_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(TRAEFIK_CRDS.glob("traefik.io_*.yaml"))]


def install_dask_gateway_parts(plane: ControlPlane, namespace: str) -> None:
    """The CRDs and RBAC dask-gateway's chart would install, applied and established."""
    crds = [DASKCLUSTER_CRD, *traefik_crds()]
    assert len(crds) == 3, f"Traefik's CRDs are missing from {TRAEFIK_CRDS} (scripts/test-install.d/60-kubernetes.sh)"
    objects = [
        *crds,
        *_account_objects(GATEWAY_ACCOUNT, namespace, GATEWAY_RULES),
        *_account_objects(CONTROLLER_ACCOUNT, namespace, CONTROLLER_RULES),
    ]
    http = plane.session()
    for obj in objects:
        answer = apply(plane, obj, namespace, http)
        assert answer.status_code in (200, 201), f"{obj['kind']}/{obj['metadata']['name']}: {answer.text}"
    for crd in crds:
        url = f"{plane.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"

        def established(url: str = url) -> bool:
            conditions = http.get(url, timeout=10).json().get("status", {}).get("conditions", [])
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, f"CRD {crd['metadata']['name']} established")


def provide_cvmfs_volume(
    plane: ControlPlane, namespace: str, claim: str = CVMFS_CLAIM, host_path: Path | None = None
) -> None:
    """The volume cvmfs-csi's provisioner would make for the chart's CVMFS claim (there is no CSI
    driver here), so kube-scheduler places pods that mount it: without a bound claim it never does.
    With `host_path`, a folder of this host stands in for the driver's mount, for a real kubelet."""
    source: dict[str, Any] = {"csi": {"driver": "cvmfs.csi.cern.ch", "volumeHandle": f"{namespace}-{claim}"}}
    if host_path is not None:
        source = {"hostPath": {"path": str(host_path), "type": "Directory"}}
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-{claim}"},
        "spec": {
            "capacity": {"storage": "1"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "cvmfs",
            **source,
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    answer = apply(plane, volume, namespace, plane.session())
    assert answer.status_code in (200, 201), answer.text
    url = f"{plane.url}/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"
    wait_for(lambda: plane.session().get(url, timeout=10).json()["status"].get("phase") == "Bound", "CVMFS bound")


def wait_for(
    check: Callable[[], Any],
    what: str,
    timeout: float = 60,
    process: Process | None = None,
    explain: Callable[[], str] | None = None,
) -> Any:
    """check()'s first true value, polled; on timeout, what was awaited, explain() and the process's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"{what}: {process.name} exited {process.popen.returncode}\n{process.log_tail()}")
        if time.monotonic() > deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            why = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"{what}: not within {timeout} s{why}{tail}")
        time.sleep(0.5)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReportingNode:
    """A Node whose stand-in kubelet only reports: its lease kept fresh, every pod bound to it said
    to run (status Running, Ready, its containers started, an address of its own), and every pod
    being deleted said to have stopped."""

    def __init__(self, plane: ControlPlane, name: str, cores: int = 16, memory_gi: int = 64):
        self.plane = plane
        self.name = name
        self.http = plane.session()
        self._stop = threading.Event()
        self._addresses: dict[str, str] = {}
        self._thread = threading.Thread(target=self._report, name=f"node-{name}", daemon=True)
        self.capacity = {"cpu": str(cores), "memory": f"{memory_gi}Gi", "pods": "110"}

    def start(self) -> ReportingNode:
        url = self.plane.url
        node = {"metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name}}}
        made = self.http.post(f"{url}/api/v1/nodes", json=node, timeout=10)
        assert made.status_code == 201, made.text
        status = {"capacity": self.capacity, "allocatable": self.capacity, "conditions": [self._ready()]}
        patched = self.http.patch(
            f"{url}/api/v1/nodes/{self.name}/status",
            json={"status": status},
            headers={"Content-Type": "application/strategic-merge-patch+json"},
            timeout=10,
        )
        assert patched.status_code == 200, patched.text
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _ready(self) -> dict[str, str]:
        now = _now()
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "stand-in kubelet of the tests: reports only",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    def _report(self) -> None:
        renewed = 0.0
        while not self._stop.wait(0.5):
            try:
                if time.monotonic() - renewed > 10:
                    self._renew_lease()
                    renewed = time.monotonic()
                self._report_pods()
            except requests.RequestException:
                continue  # the API server is stopping with the test; the next round tells

    def _renew_lease(self) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": 40,
                "renewTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        apply(self.plane, lease, "kube-node-lease", self.http)

    def _report_pods(self) -> None:
        listing = self.http.get(
            f"{self.plane.url}/api/v1/pods", params={"fieldSelector": f"spec.nodeName={self.name}"}, timeout=10
        ).json()
        for pod in listing.get("items", []):
            if pod["metadata"].get("deletionTimestamp"):
                self._finish(pod)
            elif pod["status"].get("phase") != "Running":
                self._run(pod)

    def _finish(self, pod: dict[str, Any]) -> None:
        """A kubelet, its containers stopped, removes the pod for good; then the garbage collector
        removes what the pod owns (dask-gateway's service, routes and workers)."""
        meta = pod["metadata"]
        self.http.delete(
            f"{self.plane.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            json={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            timeout=10,
        )

    def _run(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        address = self._addresses.setdefault(key, f"10.244.0.{len(self._addresses) + 2}")
        now = _now()
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        containers = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": address,
            "podIPs": [{"ip": address}],
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": containers,
        }
        self.http.patch(
            f"{self.plane.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            json={"status": status},
            headers={"Content-Type": "application/strategic-merge-patch+json"},
            timeout=10,
        )


@contextlib.contextmanager
def reporting_node(plane: ControlPlane, name: str) -> Iterator[ReportingNode]:
    node = ReportingNode(plane, name).start()
    try:
        yield node
    finally:
        node.stop()


class Process:
    """A dask-gateway-server process with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log} ---\n" + "\n".join(text)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def _account_kubeconfig(plane: ControlPlane, namespace: str, account: str) -> Path:
    return plane.kubeconfig(account, token=service_account_token(plane, namespace, account))


def _process_env(kubeconfig: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "DASK_GATEWAY"))}
    return {**env, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT), **(extra or {})}


def chart_gateway_config() -> str:
    """The Python the chart's values give dask-gateway's gateway (`gateway.extraConfig`)."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return "\n".join(values["dask-gateway"]["gateway"]["extraConfig"].values())


@dataclass
class RunningGateway:
    url: str
    hub_token: str
    gateway: Process
    controller: Process

    def logs(self) -> str:
        return f"{self.gateway.log_tail()}\n{self.controller.log_tail()}"


def install_chart(
    plane: ControlPlane, namespace: str, values: dict[str, Any], cvmfs_host_path: Path | None = None
) -> list[dict[str, Any]]:
    """The chart rendered with `values` and applied server-side, with what dask-gateway's chart and
    cvmfs-csi would add (CVMFS from `cvmfs_host_path` when given); its rendered objects."""
    http = plane.session()
    made = http.post(f"{plane.url}/api/v1/namespaces", json={"metadata": {"name": namespace}}, timeout=10)
    assert made.status_code == 201, made.text
    chart = render_objects(helm.Chart.load(CHART_DIR), values)
    for obj in chart:
        answer = apply(plane, obj, namespace, http)
        assert answer.status_code in (200, 201), f"{obj['kind']}/{obj['metadata']['name']}: {answer.text}"
    install_dask_gateway_parts(plane, namespace)
    provide_cvmfs_volume(plane, namespace, host_path=cvmfs_host_path)
    default_account = f"{plane.url}/api/v1/namespaces/{namespace}/serviceaccounts/default"
    wait_for(lambda: http.get(default_account, timeout=10).status_code == 200, "the default ServiceAccount")
    return chart


@contextlib.contextmanager
def dask_gateway(
    plane: ControlPlane,
    namespace: str,
    chart: list[dict[str, Any]],
    folder: Path,
    password: str = "",
    hub_api_url: str = "",
    port: int = 0,
) -> Iterator[RunningGateway]:
    """dask-gateway's API server (KubeBackend, configured by this project's chart values: `chart`
    are its rendered objects) and its KubeController, each with its ServiceAccount's token. Users
    log in through the hub at `hub_api_url` as in the chart or, with no hub, with `password`."""
    config_map = chart_object(chart, "ConfigMap", "analysis-facility-config")
    hub_token = secret_value(chart_object(chart, "Secret", "analysis-facility-gateway-token"), "api-token")
    folder.mkdir(parents=True, exist_ok=True)
    gateway_port, controller_port = port or free_port_block(), free_port_block()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    # The settings dask-gateway's chart writes into its gateway's configuration (the parts that are
    # not about running inside a pod), then this project's extraConfig as the chart passes it.
    # Login: the chart's is the hub's; without a hub, dask-gateway's password login.
    if hub_api_url:
        login = f"""\
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = {hub_api_url!r}
"""
    else:
        login = f"""\
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
"""
    gateway_config = folder / "gateway_config.py"
    gateway_config.write_text(
        f"""\
c.DaskGateway.address = "127.0.0.1:{gateway_port}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.KubeBackend.gateway_instance = "{GATEWAY_INSTANCE}"
c.KubeBackend.api_url = "{gateway_url}/api"
c.KubeClusterConfig.namespace = "{namespace}"
"""
        + login
        + chart_gateway_config()
    )
    controller_config = folder / "controller_config.py"
    controller_config.write_text(
        f"""\
c.KubeController.address = "127.0.0.1:{controller_port}"
c.KubeController.api_url = "{gateway_url}/api"
c.KubeController.gateway_instance = "{GATEWAY_INSTANCE}"
c.KubeController.proxy_prefix = ""
"""
    )
    # What dask-gateway's chart puts into its gateway pod's environment, with this chart's values.
    facility_env = {
        "AF_FACILITY_YAML": config_map["data"]["facility.yaml"],
        "AF_GATEWAY_BACKEND": config_map["data"]["gateway-backend"],
        "JUPYTERHUB_API_TOKEN": hub_token,
    }
    token_secret = chart_object(chart, "Secret", "analysis-facility-gateway-token")
    if "metrics-token" in token_secret["data"]:  # optional in the chart's values too: metrics enabled
        facility_env["AF_METRICS_TOKEN"] = secret_value(token_secret, "metrics-token")
    gateway = Process(
        "gateway",
        [str(DASK_GATEWAY_SERVER), "-f", str(gateway_config)],
        _process_env(_account_kubeconfig(plane, namespace, GATEWAY_ACCOUNT), facility_env),
        folder / "gateway.log",
    )
    controller = Process(
        "controller",
        [str(DASK_GATEWAY_SERVER), "kube-controller", "-f", str(controller_config)],
        _process_env(_account_kubeconfig(plane, namespace, CONTROLLER_ACCOUNT)),
        folder / "controller.log",
    )
    try:
        wait_for(lambda: _answers(f"{gateway_url}/api/health"), "the gateway answers", process=gateway)
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{controller_port}/api/health"),
            "the controller answers",
            process=controller,
        )
        yield RunningGateway(gateway_url, hub_token, gateway, controller)
    finally:
        controller.stop()
        gateway.stop()


def secret_value(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def chart_object(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def objects(plane: ControlPlane, path: str, cluster: str) -> list[dict[str, Any]]:
    """The objects at `path` (in the namespace) that belong to one dask cluster (by its label)."""
    url = f"{plane.url}/{path}".replace("{ns}", NAMESPACE)
    answer = plane.session().get(url, params={"labelSelector": f"gateway.dask.org/cluster={cluster}"}, timeout=10)
    answer.raise_for_status()
    return answer.json()["items"]


def cluster_object(plane: ControlPlane, name: str) -> dict[str, Any]:
    answer = plane.session().get(f"{plane.url}/{CRD}/namespaces/{NAMESPACE}/daskclusters/{name}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def heartbeat(running: RunningGateway, cluster_name: str, token: str, count: int) -> requests.Response:
    """What a running scheduler's dask_gateway.scheduler_preload sends the gateway."""
    return requests.post(
        f"{running.url}/api/v1/clusters/{cluster_name}/heartbeat",
        json={"count": count, "active_workers": [], "closing_workers": [], "closed_workers": []},
        headers={"Authorization": f"token {token}"},
        timeout=10,
    )


def started_and_running(plane: ControlPlane, running: RunningGateway, gateway: Any, **chosen: Any) -> str:
    """A new cluster of the gateway's user with these options, once its scheduler pod 'runs'."""
    options = gateway.cluster_options()
    for key, value in chosen.items():
        setattr(options, key, value)
    full_name = gateway.submit(cluster_options=options)
    name = full_name.split(".")[1]
    wait_for(
        lambda: cluster_object(plane, name).get("status", {}).get("phase") == "Running",
        f"cluster {name} Running",
        timeout=90,
        process=running.controller,
    )
    return full_name


def cluster_token(plane: ControlPlane, name: str) -> str:
    """The API token the controller made for a cluster's scheduler (its credentials Secret)."""
    (secret,) = wait_for(lambda: objects(plane, "api/v1/namespaces/{ns}/secrets", name), f"credentials of {name}")
    return secret_value(secret, "api-token")
