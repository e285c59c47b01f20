"""Map a validated spawn request onto the real spawner of its backend's kind (backends.registry)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jupyterhub.spawner import Spawner

from backends.common.notebook_child import ChildConfig
from backends.registry import kind_of
from facility.model import Backend, Facility
from facility.validation import SpawnRequest
from hub_config import examples

if TYPE_CHECKING:
    from hub_config.spawner import FacilitySpawner


# Where child spawner classes lived before backends/ (issue 14): a hub database written then names
# them so, and its running servers must still be polled and stopped after the upgrade.
MOVED_SPAWNERS = {
    "hub_config.slurm.FacilitySlurmSpawner": "backends.slurm.spawner.FacilitySlurmSpawner",
    "hub_config.condor.FacilityCondorSpawner": "backends.htcondor.spawner.FacilityCondorSpawner",
    "hub_config.local_accounts.PerUserLocalSpawner": "backends.local.spawner.PerUserLocalSpawner",
}


def import_spawner(path: str) -> type[Spawner]:
    module, _, name = MOVED_SPAWNERS.get(path, path).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Spawner)):
        raise TypeError(f"{path} is not a JupyterHub Spawner")
    return cls


def child_for(fac: Facility, backend: Backend, request: SpawnRequest, parent: FacilitySpawner) -> ChildConfig:
    kind = kind_of(backend)
    child = kind.load("notebook_child")(fac, backend, request, parent)
    # ~/examples kept up to date, pulled from the hub at the address the server uses for its API.
    return examples.with_examples(child, parent.examples_repo, parent.hub.url)
