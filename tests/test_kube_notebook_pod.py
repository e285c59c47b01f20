"""Issue 16, examples reach every user, on Kubernetes for real: the chart's hub (KubeSpawner)
starts a user's notebook server as a pod on a real kubelet, from the notebook image `make images`
built, and the server pulls the facility's examples from the hub as it starts.

The image is taken from the images cache (images/build.py, $AF_IMAGES_CACHE; `make test-images`
builds it first, in tests/test_image_build.py), turned into an OCI archive of that one image and
imported into the kubelet's containerd under the name the chart's facility.yaml gives it, as a
registry pull would. The chart is applied to the tests' API server (tests/kube_dask_gateway.py),
its hub runs on this host (tests/kube_chart_hub.py), the pod under containerd, runc and a CNI
bridge (tests/kube_kubelet.py).

What stands in for the cluster here, and why:
- No DNS or kube-proxy runs, so the hub's Service name (the chart's hub_connect_url) resolves
  nowhere: the hub listens on this host's address on the pods' bridge, and that is its connect
  URL, as the chart's Service name would be. Pods reach it through the bridge, the proxy (on this
  host) reaches pods at their bridge addresses.
- cvmfs-csi cannot run: the chart's CVMFS claim is bound to a host folder (hostPath volume).

The examples repository is the chart's hub's own: it publishes it as it starts (nobody runs `af up`
in a cluster; helm/analysis-facility/files/jupyterhub_config_k8s.py), here from this checkout's
notebooks/, in the image from the copy images/Containerfile puts there.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from af.hub_content import example_notebooks
from facility import examples
from images import build
from tests.kube_chart_hub import RunningHub, chart_hub
from tests.kube_control_plane import ControlPlane, module_control_plane, service_account_token
from tests.kube_dask_gateway import NAMESPACE, install_chart, wait_for
from tests.kube_helpers import CHART_DIR
from tests.kube_kubelet import Kubelet, kubelet, missing, single_image_archive, unmount_under

pytestmark = [pytest.mark.images, pytest.mark.no_facility, pytest.mark.slow, pytest.mark.timeout(1200)]

USER = "alice"
IMPORT_TIMEOUT_S = 600  # about 600 MB of compressed layers unpacked by containerd
SERVER_TIMEOUT_S = 300  # the pod's start and the server's first answer, the examples pulled


@dataclass
class Cluster:
    plane: ControlPlane
    node: Kubelet
    hub: RunningHub
    image: str  # the facility's notebook image, as the pods name it
    imported_at: float  # time.monotonic() when containerd had the image


def notebook_archive(folder: Path, name: str) -> Path:
    """The notebook image `make images` built, as an OCI archive of that image alone."""
    cache = build.cache_dir()
    state = cache / "state.json"
    record = json.loads(state.read_text()).get("notebook") if state.exists() else None
    if not record or not (cache / "oci" / "index.json").exists():
        pytest.fail(f"no notebook image in {cache}: build it first with `make images`")
    tag = record["tag"].rsplit("/", 1)[-1]  # localhost/af-notebook:KEY is af-notebook:KEY in the layout
    return single_image_archive(cache / "oci", tag, folder / "notebook.tar", name)


def shared_folder(path: Path) -> Path:
    """A folder that is a mount point of its own, shared: what cvmfs-csi's mount is, and what the
    chart's HostToContainer propagation needs (containerd refuses a private mount)."""
    path.mkdir()
    for command in (["mount", "--bind", path, path], ["mount", "--make-shared", path]):
        subprocess.run(command, check=True)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    absent = missing()
    if absent:
        pytest.fail(absent)
    folder = tmp_path_factory.mktemp("notebook-pod")
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["facility"]
    raw["backends"][0]["site"] = {"namespace": NAMESPACE}  # in the pod, the ServiceAccount's namespace
    image = next(i["registry"] for i in raw["images"] if i.get("default"))
    archive = notebook_archive(folder, image)
    cvmfs = shared_folder(folder / "cvmfs")
    try:  # a failed setup unmounts too: the cvmfs bind was left behind by a failed image import
        # overlayfs: the native snapshotter would copy the image's 1.5 GB tree once per layer.
        with (
            module_control_plane(tmp_path_factory) as plane,
            kubelet(plane, folder / "kubelet", snapshotter="overlayfs") as node,
        ):
            started = time.monotonic()
            node.import_image(archive, image, timeout=IMPORT_TIMEOUT_S, index_name=False)
            imported_at = time.monotonic()
            archive.unlink()  # containerd holds the image now: 600 MB less left behind
            print(f"\nnotebook image imported into containerd in {imported_at - started:.1f} s")
            chart = install_chart(plane, NAMESPACE, {"facility": raw}, cvmfs_host_path=cvmfs)
            # The hub and its proxy run on this host (chart_hub), and XCache is not used: their pods
            # would only have the kubelet try registries that cannot be reached here.
            for kind, name in (("deployments", "af-hub"), ("deployments", "af-proxy"), ("statefulsets", "af-xcache")):
                scaled = plane.session().patch(
                    f"{plane.url}/apis/apps/v1/namespaces/{NAMESPACE}/{kind}/{name}/scale",
                    json={"spec": {"replicas": 0}},
                    headers={"Content-Type": "application/merge-patch+json"},
                    timeout=10,
                )
                assert scaled.status_code == 200, scaled.text
            account = plane.kubeconfig("af-hub", token=service_account_token(plane, NAMESPACE, "af-hub"))
            gateway = {"cloud": "http://127.0.0.1:9"}  # no dask-gateway here; no quota asks it
            with chart_hub(chart, folder / "hub", gateway, account, hub_address=node.host_address) as hub:
                yield Cluster(plane, node, hub, image, imported_at)
    finally:
        unmount_under(folder)


def user_pods(plane: ControlPlane) -> list[dict[str, Any]]:
    answer = plane.session().get(f"{plane.url}/api/v1/namespaces/{NAMESPACE}/pods", timeout=10)
    answer.raise_for_status()
    return [p for p in answer.json()["items"] if p["metadata"]["name"] == f"jupyter-{USER}"]


def notebook_processes() -> list[psutil.Process]:
    """This host's processes of the user's server in a pod: environments only pods' containers get
    (the Kubernetes service variables) with the hub's variables for this user."""
    found = []
    for process in psutil.process_iter():
        try:
            environ = process.environ()
        except psutil.Error:
            continue
        if environ.get("JUPYTERHUB_USER") == USER and "KUBERNETES_SERVICE_HOST" in environ:
            found.append(process)
    return found


def test_the_charts_hub_starts_a_notebook_pod_on_a_real_kubelet_that_pulls_the_examples(cluster: Cluster) -> None:
    plane, node, hub = cluster.plane, cluster.node, cluster.hub
    assert examples.is_published(examples.repo_path(hub.state)), "the chart's hub published no examples"
    published = sorted(p.name for p in example_notebooks())
    token = hub.user_token(USER)
    headers = {"Authorization": f"token {token}"}
    asked = time.monotonic()
    reply = requests.post(
        f"{hub.api_url}/users/{USER}/server",
        json={"backend": "cloud", "cores": 1, "memory_gb": 2},
        headers=headers,
        timeout=60,
    )
    assert reply.status_code in (201, 202), reply.text

    said = [""]  # the notebook container's output, kept: the kubelet removes it with the pod

    def explain() -> str:
        pods = user_pods(plane)
        status = json.dumps(pods[0]["status"], indent=1)[-3000:] if pods else "no pod"
        output = "\n".join(said[0].splitlines()[-40:])
        return f"{status}\n--- the notebook container ---\n{output}\n--- hub ---\n{hub.log_tail()}"

    def ready() -> bool:
        said[0] = node.container_log(NAMESPACE, f"jupyter-{USER}", "notebook") or said[0]
        server = hub.api("GET", f"/users/{USER}").json()["servers"].get("", {})
        if not server:
            raise AssertionError(f"the server is gone: {explain()}")
        return bool(server.get("ready"))

    wait_for(ready, f"{USER}'s notebook server ready", timeout=SERVER_TIMEOUT_S, explain=explain)
    answered = time.monotonic()
    (pod,) = user_pods(plane)
    assert pod["spec"]["nodeName"] == node.name
    (status,) = pod["status"]["containerStatuses"]
    assert status["image"].endswith(cluster.image) and status["state"].get("running"), status
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    container_started = datetime.fromisoformat(status["state"]["running"]["startedAt"])
    print(
        f"{USER}'s server answered {answered - asked:.1f} s after the spawn was asked "
        f"(its container started {(container_started - created).total_seconds():.0f} s after the pod was made), "
        f"{answered - cluster.imported_at:.1f} s after the image was imported (the chart and hub started between)"
    )

    # The user's ~/examples in the pod, through the hub's proxy and the server's contents API.
    listing = requests.get(f"{hub.url}/user/{USER}/api/contents/{examples.TARGET}", headers=headers, timeout=30)
    assert listing.status_code == 200, listing.text
    assert sorted(entry["name"] for entry in listing.json()["content"] if entry["type"] == "notebook") == published
    first = requests.get(
        f"{hub.url}/user/{USER}/api/contents/{examples.TARGET}/{published[0]}", headers=headers, timeout=30
    )
    assert first.status_code == 200, first.text
    assert first.json()["content"]["cells"], "the pulled notebook has no cells"

    # Stopping the server removes the pod, and its processes end on this host.
    assert notebook_processes(), "no process of the notebook container on this host"
    stopped = hub.api("DELETE", f"/users/{USER}/server")
    assert stopped.status_code in (202, 204), stopped.text
    wait_for(lambda: not user_pods(plane), f"{USER}'s pod removed", timeout=120, explain=explain)
    wait_for(lambda: not notebook_processes(), "the notebook container's processes ended", timeout=60)
    assert hub.api("GET", f"/users/{USER}").json()["servers"] == {}
