"""What every kind's notebook child spawner gets: the config all kinds share.

Each kind's `notebook_child(fac, backend, request, parent)` (named in backends.registry) returns
(spawner class, config dict); the config uses the child spawner's own traits (KubeSpawner's,
batchspawner's, LocalProcessSpawner's), so nothing is re-implemented. `parent` is the hub's
FacilitySpawner (hub_config.spawner), seen here only through the protocol below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from facility.data_environment import data_environment
from facility.model import Backend, Facility
from facility.validation import SpawnRequest

ChildConfig = tuple[type, dict[str, Any]]


class ParentSpawner(Protocol):
    environment: dict[str, str]
    home_dir_template: str
    user: Any

    def environment_for_notebook(self, backend: Backend) -> dict[str, str]: ...


def common_config(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> dict[str, Any]:
    env = dict(parent.environment)
    env.update(parent.environment_for_notebook(backend))
    env["AF_IMAGE"] = fac.image(request.image).registry
    return {
        "environment": env,
        "cpu_limit": float(request.cores),
        "mem_limit": f"{request.memory_gb}G",
        "start_timeout": fac.hub.start_timeout_seconds,
    }


def batch_config(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> dict[str, Any]:
    """common_config plus batchspawner's request traits."""
    return {**common_config(fac, backend, request, parent), **batch_request_traits(request)}


def batch_request_traits(request: SpawnRequest) -> dict[str, Any]:
    """batchspawner's request traits (req_*) of a validated request; the predicted wait asks the
    scheduler about the same values (backends/<kind>/wait.py)."""
    hours = request.walltime_hours or 1
    return {
        "req_nprocs": str(request.cores),
        "req_memory": f"{request.memory_gb}G",
        "req_runtime": f"{hours:02d}:00:00",
        "req_queue": request.queue,
        "req_ngpus": str(request.gpus),
    }


def batch_environment(
    fac: Facility, backend: Backend, config: dict[str, Any], site_env: dict[str, str] | None = None
) -> dict[str, str]:
    """A batch notebook job's environment: the common config's, the backend's $AF_DATA_* (computed
    from the current facility.yaml, so they win over the hub's copy from its start), then the
    kind's own site variables (e.g. Slurm's SLURM_CONF)."""
    return {**config.get("environment", {}), **data_environment(fac, backend), **(site_env or {})}


def home_folder(home_dir_template: str, username: str) -> str:
    """The user's home folder as the local backend lays it out (the batch kinds' default job folder)."""
    return str(Path(home_dir_template.format(username=username)).expanduser())
