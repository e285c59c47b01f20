"""The pods a kubernetes backend creates, for each form choice, built by the real libraries.

Notebook pods: the hub's FacilitySpawner validates the request and constructs its real KubeSpawner
child exactly as at spawn time; KubeSpawner.get_pod_manifest() builds the pod (it does not contact
the API server; the kubeconfig names one that never answers). Dask pods: dask-gateway's own
KubeController.make_pod with the KubeClusterConfig our options handler produces.
Every pod is checked field by field and validated against the Kubernetes API schema.

No Kubernetes API server runs here, so nothing is scheduled: these tests check what would be sent.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User as GatewayUser
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from kubernetes_validate.utils import ValidationError
from traitlets.config import Config

import facility
from backends.common.cluster_options import NotAllowedError
from backends.kubernetes.gateway import configure, configure_from_environment, kube_cluster_options
from backends.kubernetes.pods import SLURM_FLAGS, SLURM_IMAGE_ROOT, SLURM_PRE_EXEC
from facility import examples
from facility.cvmfs import CvmfsImageError
from hub_config import children
from hub_config.spawner import FacilitySpawner, render_form
from tests.kube_helpers import UNREACHABLE_KUBECONFIG, hub_spawner, hub_user, site_raw, validate, with_local_cvmfs

pytestmark = pytest.mark.no_facility

PRE_EXEC = "module load apptainer"
# An in-cluster GPU backend next to the example's CPU cloud and interLink offload target.
CLOUD_GPU = {
    "name": "cloud-gpu",
    "kind": "kubernetes",
    "label": "Cloud GPUs",
    "resources": {"cores": {"max": 8, "min": 1}, "memory_gb": {"max": 32, "min": 1}, "gpus": {"max": 2}},
    "gpu_types": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-H100-80GB-HBM3"],
    "dask": {"worker_gpus": {"max": 1}},
    "data_cache": "cloud-xcache",
    "site": {"namespace": "analysis", "gpu_type_label": "nvidia.com/gpu.product"},
}


@pytest.fixture(scope="module", autouse=True)
def kubeconfig(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(UNREACHABLE_KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(path))
        # kubernetes_asyncio reads $KUBECONFIG when first imported, which collection already did.
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield path


@pytest.fixture(scope="module")
def cvmfs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cvmfs")


@pytest.fixture(scope="module")
def site_file(tmp_path_factory: pytest.TempPathFactory, cvmfs_root: Path) -> Path:
    raw = with_local_cvmfs(site_raw(), cvmfs_root)
    raw["backends"].insert(2, CLOUD_GPU)
    offload = next(b for b in raw["backends"] if b["name"] == "hpc-offload")["site"]["offload"]
    offload.update(pre_exec=PRE_EXEC, image_root="", image_from_cvmfs=True)
    path = tmp_path_factory.mktemp("site") / "facility.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def hub_db():
    return orm.new_session_factory("sqlite:///:memory:")()


@pytest.fixture(scope="module")
def alice(hub_db) -> User:
    return hub_user(hub_db, "alice", ["gpu-users"])


@pytest.fixture(scope="module")
def bob(hub_db) -> User:
    return hub_user(hub_db, "bob", [])


async def notebook_pod(
    site_file: Path, user: User, db, options: dict[str, Any], parent: FacilitySpawner | None = None
) -> tuple[dict[str, Any], Any]:
    """The pod manifest the hub's KubeSpawner child would create for these form values, and that child."""
    parent = parent or hub_spawner(user, site_file, db)
    request = parent.validated(options)
    fac = parent.facility
    parent.child_class, parent.child_config = children.child_for(fac, fac.backend(request.backend), request, parent)
    parent.construct_child()
    child = parent.child_spawner
    child.api_token = "token-the-hub-would-issue"  # noqa: S105 - set by the hub just before start
    async with ApiClient() as api:
        return api.sanitize_for_serialization(await child.get_pod_manifest()), child


def container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(pod)["env"]}


def cvmfs_mount(pod: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in container(pod)["volumeMounts"] if m["name"] == "cvmfs")


def cvmfs_volume(pod: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == "cvmfs")


@pytest.mark.parametrize(
    ("cores", "memory_gb", "image"),
    [(1, 1, "coffea-2026"), (3, 6, "coffea-2026"), (8, 32, "coffea-2026-gpu")],
)
async def test_notebook_pod_cpu_memory_image(site_file, alice, hub_db, cvmfs_root, cores, memory_gb, image):
    pod, spawner = await notebook_pod(
        site_file, alice, hub_db, {"backend": "cloud", "cores": cores, "memory_gb": memory_gb, "image": image}
    )
    validate(pod)
    c = container(pod)
    registry = facility.load(site_file).image(image).registry
    assert c["image"] == registry
    assert float(c["resources"]["limits"]["cpu"]) == cores
    assert float(c["resources"]["requests"]["cpu"]) == cores
    # KubeSpawner reads "6G" as 6 GiB and sends bytes.
    assert int(c["resources"]["limits"]["memory"]) == int(c["resources"]["requests"]["memory"]) == memory_gb * 2**30
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert spawner.namespace == "analysis"
    # The server listens on the pod's address (not the hub's 127.0.0.1), where the proxy reaches it.
    assert env_of(pod)["JUPYTERHUB_SERVICE_URL"].startswith("http://0.0.0.0:8888/")
    assert "nodeSelector" not in pod["spec"] or not pod["spec"]["nodeSelector"]
    assert cvmfs_volume(pod)["persistentVolumeClaim"] == {"claimName": "cvmfs", "readOnly": True}
    assert cvmfs_mount(pod) == {
        "name": "cvmfs",
        "mountPath": str(cvmfs_root),
        "readOnly": True,
        "mountPropagation": "HostToContainer",
    }
    env = env_of(pod)
    assert env["AF_BACKEND"] == "cloud"
    assert env["AF_IMAGE"] == registry
    assert env["AF_DATA_CACHE"] == "root://xcache.analysis.svc:1094"
    assert env["AF_CVMFS_ROOT"] == str(cvmfs_root)


async def test_notebook_pod_pulls_the_examples_from_the_hubs_service(site_file, alice, hub_db, tmp_path):
    """A pod reaches the hub at the chart's hub_connect_url: it pulls the examples from there as it starts."""
    notebook = tmp_path / "first_steps.ipynb"
    notebook.write_text("{}\n")
    repo = examples.repo_path(tmp_path / "state")
    examples.publish(repo, [notebook])
    hub = Hub(base_url="/hub/")
    hub.connect_url = "http://hub:8081"  # as helm/.../jupyterhub_config_k8s.py sets it
    parent = FacilitySpawner(
        user=alice, hub=hub, db=hub_db, config=Config(), facility_file=str(site_file), examples_repo=str(repo)
    )
    pod, _ = await notebook_pod(site_file, alice, hub_db, {"backend": "cloud"}, parent=parent)
    validate(pod)
    env = env_of(pod)
    assert env[examples.PULL_ENV] == "1" and "git-pull" not in env.get("JUPYTERHUB_DEFAULT_URL", "")
    assert env["GIT_CONFIG_KEY_0"] == "url.http://hub:8081/hub/examples.git.insteadOf"
    assert env["GIT_CONFIG_VALUE_0"] == examples.ORIGIN


@pytest.mark.parametrize(("gpus", "gpu_type"), [(1, "NVIDIA-A100-SXM4-40GB"), (2, "NVIDIA-H100-80GB-HBM3")])
async def test_notebook_pod_gpu_in_cluster(site_file, alice, hub_db, gpus, gpu_type):
    options = {"backend": "cloud-gpu", "cores": 4, "memory_gb": 16, "gpus": gpus, "gpu_type": gpu_type}
    pod, spawner = await notebook_pod(site_file, alice, hub_db, options)
    validate(pod)
    resources = container(pod)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == str(gpus)
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": gpu_type}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert not any(k.startswith("slurm-job.vk.io/") for k in pod["metadata"]["annotations"])


@pytest.mark.parametrize(
    ("gpus", "gpu_type", "flags"), [(0, "", "--qos=gpu"), (2, "h100", "--qos=gpu --gres=gpu:h100:2")]
)
async def test_notebook_pod_offloaded_through_interlink(site_file, alice, hub_db, cvmfs_root, gpus, gpu_type, flags):
    options = {"backend": "hpc-offload", "cores": 8, "memory_gb": 32, "gpus": gpus, "gpu_type": gpu_type}
    pod, spawner = await notebook_pod(site_file, alice, hub_db, options)
    validate(pod)
    spec, annotations = pod["spec"], pod["metadata"]["annotations"]
    assert spec["nodeSelector"] == {"kubernetes.io/role": "agent", "type": "virtual-kubelet"}
    assert {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert annotations[SLURM_FLAGS] == flags
    assert annotations[SLURM_PRE_EXEC] == PRE_EXEC
    assert annotations[SLURM_IMAGE_ROOT] == ""
    # The HPC node runs the unpacked image from CVMFS and mounts its own /cvmfs read-only.
    assert container(pod)["image"] == str(
        cvmfs_root / "unpacked.cern.ch" / "registry.example.org/analysis-facility/notebook:2026.9"
    )
    assert cvmfs_volume(pod)["hostPath"] == {"path": str(cvmfs_root), "type": "Directory"}
    assert cvmfs_mount(pod)["readOnly"] is True
    limits = container(pod)["resources"]["limits"]
    assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    assert env_of(pod)["AF_DATA_CACHE"] == "root://xcache.hpc.example.org:1094"


async def test_offloaded_image_missing_on_cvmfs_is_refused(tmp_path, alice, hub_db, site_file):
    raw = yaml.safe_load(site_file.read_text())
    raw["data"]["cvmfs_root"] = str(tmp_path)  # nothing published here
    path = tmp_path / "facility.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(CvmfsImageError, match="not published on CVMFS"):
        await notebook_pod(path, alice, hub_db, {"backend": "hpc-offload"})


def test_form_offers_only_listed_offload_targets(site_file, alice, bob):
    fac = facility.load(site_file)
    for user, expected in ((alice, True), (bob, False)):
        parent = hub_spawner(user, site_file)
        form = render_form(fac, parent.allowed_backends())
        assert ('value="hpc-offload"' in form) is expected
        # Users are told an offload target runs at an HPC centre, not in the cloud.
        assert ("HPC via interLink" in form) is expected
        assert 'value="cloud"' in form
    parent = hub_spawner(alice, site_file)
    with pytest.raises(Exception, match="'elsewhere' is not available; choose one of: login, cloud"):
        parent.validated({"backend": "elsewhere"})
    with pytest.raises(Exception, match="you may not use 'hpc-offload'"):
        hub_spawner(bob, site_file).validated({"backend": "hpc-offload"})


def test_offload_settings_are_checked_in_facility_yaml():
    raw = site_raw()
    bad = copy.deepcopy(raw)
    offload = bad["backends"][2]["site"]["offload"]
    offload["slurm_flags"] = ["--qos=gpu; rm -rf ~"]
    offload["tolerations"][0]["operator"] = "Sometimes"
    with pytest.raises(facility.FacilityError) as error:
        facility.from_dict(bad)
    text = str(error.value)
    assert "backends[2].site.offload.slurm_flags[0]: '--qos=gpu; rm -rf ~' is not allowed; sbatch flags" in text
    assert (
        "backends[2].site.offload.tolerations[0].operator: 'Sometimes' is not allowed; allowed: Exists, Equal" in text
    )
    on_slurm = copy.deepcopy(raw)
    on_slurm["backends"][4]["site"]["offload"] = raw["backends"][2]["site"]["offload"]
    with pytest.raises(facility.FacilityError, match=r"backends\[4\].site.offload: only a kubernetes backend"):
        facility.from_dict(on_slurm)


# --- Dask pods through dask-gateway's Kubernetes backend -------------------------------------------


def gateway_pods(site_file: Path, backend: str, user: GatewayUser, request: dict[str, Any]):
    fac = facility.load(site_file)
    options = kube_cluster_options(fac, fac.backend(backend))
    parsed = options.transform_options(options.parse_options(request))
    config = KubeClusterConfig(**options.get_configuration(parsed, user))
    controller = KubeController(
        api_url="http://api-dask-gateway.analysis:8000/api", gateway_instance="analysis-facility"
    )
    namespace = config.namespace
    scheduler = controller.make_pod(namespace, "c0ffee", config, is_worker=False)
    worker = controller.make_pod(namespace, "c0ffee", config, is_worker=True)
    return config, scheduler, worker


@pytest.mark.parametrize(
    ("request_", "cpu", "memory"),
    [
        ({"worker_cores": 1, "worker_memory_gb": 2}, "1.000", str(2 * 2**30)),
        ({"worker_cores": 4, "worker_memory_gb": 16}, "4.000", str(16 * 2**30)),
    ],
)
def test_dask_worker_pods_in_cluster(site_file, cvmfs_root, request_, cpu, memory):
    config, scheduler, worker = gateway_pods(site_file, "cloud", GatewayUser("alice"), request_)
    for pod in (scheduler, worker):
        validate(pod)
        assert cvmfs_volume(pod)["persistentVolumeClaim"]["readOnly"] is True
        assert cvmfs_mount(pod)["readOnly"] is True
        assert container(pod)["image"] == "registry.example.org/analysis-facility/notebook:2026.9"
    resources = container(worker)["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": cpu, "memory": memory}
    assert container(worker)["args"][:2] == ["dask", "worker"]
    assert container(scheduler)["args"][:2] == ["dask", "scheduler"]
    assert config.namespace == "analysis"
    assert env_of(worker)["AF_DATA_CACHE"] == "root://xcache.analysis.svc:1094"


def test_dask_worker_image_choice(site_file):
    _, scheduler, worker = gateway_pods(site_file, "cloud", GatewayUser("alice"), {"image": "coffea-2026-gpu"})
    assert container(worker)["image"] == container(scheduler)["image"]
    assert container(worker)["image"].endswith("/notebook-gpu:2026.9")
    validate(worker)


def test_dask_workers_offloaded_with_gpus(site_file, cvmfs_root):
    user = GatewayUser("alice", groups=["gpu-users"])
    _, scheduler, worker = gateway_pods(site_file, "cloud-gpu", user, {"worker_gpus": 1})
    validate(worker)
    assert container(worker)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nvidia.com/gpu" not in container(scheduler)["resources"]["limits"]


def test_dask_workers_offloaded_scheduler_stays(site_file, cvmfs_root):
    user = GatewayUser("alice", groups=["gpu-users"])
    _, scheduler, worker = gateway_pods(site_file, "hpc-offload", user, {"worker_cores": 2})
    for pod in (scheduler, worker):
        validate(pod)
    assert worker["spec"]["nodeSelector"] == {"kubernetes.io/role": "agent", "type": "virtual-kubelet"}
    assert worker["metadata"]["annotations"][SLURM_FLAGS] == "--qos=gpu"
    assert worker["metadata"]["annotations"][SLURM_PRE_EXEC] == PRE_EXEC
    assert container(worker)["image"].startswith(str(cvmfs_root / "unpacked.cern.ch"))
    assert cvmfs_volume(worker)["hostPath"]["path"] == str(cvmfs_root)
    # The scheduler stays in the cluster, next to the gateway, with the cluster's CVMFS volume.
    assert "nodeSelector" not in scheduler["spec"]
    assert not any(k.startswith("slurm-job.vk.io/") for k in scheduler["metadata"]["annotations"])
    assert "persistentVolumeClaim" in cvmfs_volume(scheduler)


def test_dask_gateway_refuses_users_outside_groups(site_file):
    with pytest.raises(NotAllowedError, match="may not start clusters on 'hpc-offload'"):
        gateway_pods(site_file, "hpc-offload", GatewayUser("bob"), {})


def test_schema_validation_catches_a_broken_pod():
    """The validator used above does refuse what the API server would refuse."""
    broken = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"image": 3}]}}
    with pytest.raises(ValidationError):
        validate(broken)


def test_gateway_configuration_file_settings(site_file, cvmfs_root, monkeypatch):
    """What the gateway in the cluster loads (chart: dask-gateway.gateway.extraConfig and env)."""
    c = Config()
    monkeypatch.setenv("AF_FACILITY_YAML", site_file.read_text())
    monkeypatch.setenv("AF_GATEWAY_BACKEND", "hpc-offload")
    configure_from_environment(c)
    assert c.DaskGateway.backend_class == "dask_gateway_server.backends.kubernetes.KubeBackend"
    defaults = KubeClusterConfig(config=c)
    assert defaults.worker_extra_pod_config["nodeSelector"] == {
        "kubernetes.io/role": "agent",
        "type": "virtual-kubelet",
    }
    assert defaults.worker_extra_pod_annotations[SLURM_FLAGS] == "--qos=gpu"
    assert defaults.cluster_max_workers == facility.load(site_file).backend("hpc-offload").dask.workers.max
    worker = KubeController(api_url="http://gw/api", gateway_instance="af").make_pod("analysis", "c1", defaults, True)
    validate(worker)
    fields = [f.field for f in c.Backend.cluster_options.fields]
    assert fields == ["cluster_name", "worker_cores", "worker_memory_gb", "image", "outlive_server"]
    with pytest.raises(ValueError, match="'tier2' is a htcondor backend; this gateway runs kubernetes ones"):
        configure(Config(), str(site_file), "tier2")
    monkeypatch.delenv("AF_GATEWAY_BACKEND")
    with pytest.raises(RuntimeError, match=r"\$AF_GATEWAY_BACKEND is not set"):
        configure_from_environment(Config())
