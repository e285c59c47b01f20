"""Notebook servers as pods: KubeSpawner with the pod settings the Dask pods get too."""

from __future__ import annotations

from typing import Any

from kubespawner import KubeSpawner

from backends.common.notebook_child import ChildConfig, ParentSpawner, common_config
from backends.kubernetes.pods import NOTEBOOK_PORT, namespace, pod_settings
from backends.kubernetes.settings import KubernetesSettings
from facility.model import Backend, Facility
from facility.validation import SpawnRequest

# The notebook image's user (images/Containerfile: `useradd --uid 1000 analyst`) and its home.
IMAGE_UID = 1000
IMAGE_HOME = "/home/analyst"
HOME_VOLUME = "home"
NOTEBOOK_IP = "0.0.0.0"  # noqa: S104 (inside the pod: its own network namespace)
HOME_CLAIM = "home-{username}"  # KubeSpawner expands {username} (escaped) in both places


def home_storage(backend: Backend, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """KubeSpawner settings for a user's home: its claim, made on the first start and kept when the
    server stops (facility.yaml site.home_storage_gb), and the pod's `volumes` and `volume_mounts`
    with the claim added to those given; nothing when the backend sets no size."""
    settings = KubernetesSettings.of(backend)
    if settings.home_storage_gb is None:
        return {}
    storage: dict[str, Any] = {
        "storage_pvc_ensure": True,
        "pvc_name_template": HOME_CLAIM,
        "storage_capacity": f"{settings.home_storage_gb}Gi",
        "storage_access_modes": ["ReadWriteOnce"],
        # The volume's files belong to the image user's group, so the notebook can write its home.
        "fs_gid": IMAGE_UID,
        "volumes": [*volumes, {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": HOME_CLAIM}}],
        "volume_mounts": [*mounts, {"name": HOME_VOLUME, "mountPath": IMAGE_HOME}],
    }
    if settings.home_storage_class:
        storage["storage_class"] = settings.home_storage_class
    return storage


def kubernetes_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> ChildConfig:
    pod = pod_settings(fac, backend, request.image, request.gpus, request.gpu_type)
    config = common_config(fac, backend, request, parent)
    config["environment"].update(pod.environment)
    # KubeSpawner expands {username}-style templates in values: keep JSON braces ($AF_DASK_GATEWAYS) literal.
    config["environment"] = {k: str(v).replace("{", "{{").replace("}", "}}") for k, v in config["environment"].items()}
    config.update(
        image=pod.image,
        cpu_guarantee=float(request.cores),
        mem_guarantee=f"{request.memory_gb}G",
        extra_resource_limits=pod.resource_limits,
        # Guarantee GPUs too: Kubernetes only schedules extended resources whose request equals the limit.
        extra_resource_guarantees=pod.resource_limits,
        node_selector=pod.node_selector,
        tolerations=pod.tolerations,
        extra_annotations=pod.annotations,
        volumes=pod.volumes,
        volume_mounts=pod.volume_mounts,
        # Named here so the parent's `port` (0: "choose one") is not linked onto the child: a pod
        # with containerPort 0 is refused by the API server ("Required value"), which no schema
        # check sees. KubeSpawner's own default, the port inside every pod.
        port=NOTEBOOK_PORT,
        # Likewise the parent's `ip` (JupyterHub's 127.0.0.1): the server would answer only inside
        # its pod, never the proxy. KubeSpawner's own default, every address of the pod.
        ip=NOTEBOOK_IP,
    )
    config.update(home_storage(backend, config["volumes"], config["volume_mounts"]))
    if namespace(backend):
        config["namespace"] = namespace(backend)
    return KubeSpawner, config
