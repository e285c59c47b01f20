"""dask-gateway's Kubernetes backend (dask_gateway_server.backends.kubernetes) from facility.yaml.

The gateway in the cluster (helm/analysis-facility, dask-gateway chart) loads this through its
``gateway.extraConfig``, by way of gateway.kube_gateway (which adds the facility's quota and
server-lifetime parts)::

    from gateway.kube_gateway import configure_from_environment
    configure_from_environment(c)   # $AF_FACILITY_YAML (the text) and $AF_GATEWAY_BACKEND

Schedulers always run in the cluster, next to the gateway's proxy; on an offloaded backend the
workers go to the interLink virtual node (the HPC centre) with the Slurm plugin's annotations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dask_gateway_server.options import Options

import facility
from backends.common.cluster_options import cluster_config
from backends.common.gateway_options import cluster_options
from backends.kubernetes.pods import namespace, pod_settings
from facility.model import Backend, Facility
from facility.runtime import Runtime

GATEWAY_BACKEND_CLASS = "dask_gateway_server.backends.kubernetes.KubeBackend"
ENV_FACILITY_TEXT = "AF_FACILITY_YAML"
ENV_GATEWAY_BACKEND = "AF_GATEWAY_BACKEND"


def _pod_parts(fac: Facility, backend: Backend, image: str, gpus: int, gpu_type: str, workers: bool) -> dict[str, Any]:
    """KubeClusterConfig fields for the scheduler (workers=False) or the workers."""
    # The scheduler stays in the cluster, next to the gateway's proxy: only workers are offloaded.
    pod = pod_settings(fac, backend, image, gpus if workers else 0, gpu_type, in_cluster=not workers)
    role = "worker" if workers else "scheduler"
    pod_config: dict[str, Any] = {"volumes": pod.volumes}
    if pod.node_selector:
        pod_config["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_config["tolerations"] = pod.tolerations
    container: dict[str, Any] = {"volumeMounts": pod.volume_mounts}
    if pod.resource_limits:
        container["resources"] = {"limits": pod.resource_limits, "requests": pod.resource_limits}
    parts = {
        f"{role}_extra_pod_config": pod_config,
        f"{role}_extra_container_config": container,
        f"{role}_extra_pod_annotations": pod.annotations,
    }
    if workers:
        parts["image"] = pod.image
        parts["environment"] = pod.environment
    return parts


def cluster_settings(fac: Facility, backend: Backend, options: Any) -> dict[str, Any]:
    """KubeClusterConfig settings of one cluster, from its validated cluster options."""
    image = options.image
    gpus = int(getattr(options, "worker_gpus", 0) or 0)
    gpu_type = ""  # cluster options have no GPU model: workers take any GPU of the backend
    settings = cluster_config(fac, backend, options)
    del settings["worker_gpus"]  # GPUs are pod resources here (pod_parts), not a KubeClusterConfig trait
    environment = dict(settings.pop("environment"))
    settings.update(_pod_parts(fac, backend, image, 0, "", workers=False))
    settings.update(_pod_parts(fac, backend, image, gpus, gpu_type, workers=True))
    settings["environment"] = {**settings["environment"], **environment}
    settings["worker_cores_limit"] = float(options.worker_cores)
    settings["worker_memory_limit"] = settings["worker_memory"]
    # dask-gateway's image already has the scheduler's pod share the workers' image (same versions).
    settings["scheduler_cmd"] = ["dask", "scheduler"]
    settings["worker_cmd"] = ["dask", "worker"]
    settings["cluster_max_workers"] = backend.dask.workers.max
    settings["idle_timeout"] = backend.dask.idle_timeout_minutes * 60
    if namespace(backend):
        settings["namespace"] = namespace(backend)
    return settings


def kube_cluster_options(fac: Facility, backend: Backend) -> Options:
    """The backend's cluster options (same limits and group checks), producing Kubernetes settings."""
    return cluster_options(fac, backend, build=cluster_settings)


def configure_from_environment(c: Any) -> None:
    """configure() from $AF_FACILITY_YAML (facility.yaml's text) or $AF_FACILITY (its path), and
    $AF_GATEWAY_BACKEND (the backend's name)."""
    text = os.environ.get(ENV_FACILITY_TEXT)
    fac = facility.loads(text, source=f"${ENV_FACILITY_TEXT}") if text else facility.load()
    name = os.environ.get(ENV_GATEWAY_BACKEND)
    if not name:
        raise RuntimeError(f"${ENV_GATEWAY_BACKEND} is not set: which kubernetes backend does this gateway serve?")
    configure(c, fac, name)


def configure(c: Any, fac: Facility | str, backend_name: str) -> None:
    """Fill a dask-gateway-server config object for one kubernetes backend of facility.yaml (a Facility or a path)."""
    if isinstance(fac, str):
        fac = facility.load(fac)
    backend = fac.backend(backend_name)
    if backend.kind != "kubernetes":
        raise ValueError(f"backend {backend_name!r} is a {backend.kind} backend; this gateway runs kubernetes ones")
    c.DaskGateway.backend_class = GATEWAY_BACKEND_CLASS
    c.Backend.cluster_options = kube_cluster_options(fac, backend)
    default_image = fac.default_image.name
    names = [i.name for i in fac.images_for(backend)]
    defaults = _pod_parts(fac, backend, default_image if default_image in names else names[0], 0, "", workers=True)
    for key, value in defaults.items():
        setattr(c.KubeClusterConfig, key, value)
    c.KubeClusterConfig.scheduler_cmd = ["dask", "scheduler"]
    c.KubeClusterConfig.worker_cmd = ["dask", "worker"]
    c.KubeClusterConfig.cluster_max_workers = backend.dask.workers.max
    c.KubeClusterConfig.idle_timeout = backend.dask.idle_timeout_minutes * 60
    if namespace(backend):
        c.KubeClusterConfig.namespace = namespace(backend)


def configure_backend(c: Any, fac: Facility, backend: Backend, runtime: Runtime, state: Path) -> None:
    """The registry's gateway entry: Kubernetes gateways run in the cluster (helm/), configured by
    configure_from_environment; this is the same configuration for a given backend."""
    configure(c, fac, backend.name)
