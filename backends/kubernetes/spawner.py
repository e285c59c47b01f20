"""Notebook servers as pods: KubeSpawner with the pod settings the Dask pods get too."""

from __future__ import annotations

from kubespawner import KubeSpawner

from backends.common.notebook_child import ChildConfig, ParentSpawner, common_config
from backends.kubernetes.pods import NOTEBOOK_PORT, namespace, pod_settings
from facility.model import Backend, Facility
from facility.validation import SpawnRequest


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
    )
    if namespace(backend):
        config["namespace"] = namespace(backend)
    return KubeSpawner, config
