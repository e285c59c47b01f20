"""Map a validated spawn request onto the real spawner of its backend and that spawner's config.

Each backend kind has one small function returning (spawner class, config dict); the config uses
the child spawner's own traits (KubeSpawner's, batchspawner's), so nothing is re-implemented.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyterhub.spawner import SimpleLocalProcessSpawner, Spawner

from facility.model import Backend, Facility
from facility.validation import SpawnRequest

if TYPE_CHECKING:
    from hub_config.spawner import FacilitySpawner

ChildConfig = tuple[type[Spawner], dict[str, Any]]


def import_spawner(path: str) -> type[Spawner]:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Spawner)):
        raise TypeError(f"{path} is not a JupyterHub Spawner")
    return cls


def _common(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> dict[str, Any]:
    env = dict(parent.environment)
    env.update(parent.environment_for_notebook(backend))
    env["AF_IMAGE"] = fac.image(request.image).registry
    return {
        "environment": env,
        "cpu_limit": float(request.cores),
        "mem_limit": f"{request.memory_gb}G",
        "start_timeout": fac.hub.start_timeout_seconds,
    }


def local_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    config = _common(fac, backend, request, parent)
    accounts = fac.auth.unix_accounts
    if accounts.per_user:  # the user's own Unix account (af.accounts), created on first use
        from hub_config.local_accounts import PerUserLocalSpawner

        config.update(account_prefix=accounts.prefix, account_group=accounts.group)
        return PerUserLocalSpawner, config
    config["home_dir_template"] = parent.home_dir_template
    return SimpleLocalProcessSpawner, config


def kubernetes_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    from kubespawner import KubeSpawner

    from dask_backends.pods import namespace, pod_settings

    pod = pod_settings(fac, backend, request.image, request.gpus, request.gpu_type)
    config = _common(fac, backend, request, parent)
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
    )
    if namespace(backend):
        config["namespace"] = namespace(backend)
    return KubeSpawner, config


def _batch_common(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> dict[str, Any]:
    config = _common(fac, backend, request, parent)
    hours = request.walltime_hours or 1
    config.update(
        req_nprocs=str(request.cores),
        req_memory=f"{request.memory_gb}G",
        req_runtime=f"{hours:02d}:00:00",
        req_queue=request.queue,
        req_ngpus=str(request.gpus),
    )
    return config


def slurm_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    from hub_config.slurm import FacilitySlurmSpawner, slurm_child_config

    config = _batch_common(fac, backend, request, parent)
    name, template = parent.user.name, parent.home_dir_template
    return FacilitySlurmSpawner, slurm_child_config(fac, backend, request, name, template, config)


def htcondor_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    from hub_config.condor import FacilityCondorSpawner, condor_child_config

    config = _batch_common(fac, backend, request, parent)
    name, template = parent.user.name, parent.home_dir_template
    return FacilityCondorSpawner, condor_child_config(fac, backend, request, name, template, config)


CHILDREN: dict[str, Callable[..., ChildConfig]] = {
    "local": local_child,
    "kubernetes": kubernetes_child,
    "slurm": slurm_child,
    "htcondor": htcondor_child,
}


def child_for(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    return CHILDREN[backend.kind](fac, backend, request, parent)
