"""The one list of backend kinds. Everything that differs by kind asks its Kind here.

A kind's heavy parts (spawners, dask-gateway backends, `af run` runners) are named by import
path and loaded on use: the hub does not import the gateway server, the gateways do not import
the hub's spawners, and `af` imports neither. facility/schema.yaml's `kind` enum and its per-kind
`site` schemas are checked against this list by tests/test_architecture.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from backends.htcondor.settings import HTCondorSettings
from backends.kubernetes.settings import KubernetesSettings
from backends.local.settings import LocalSettings
from backends.slurm.settings import SlurmSettings
from facility.model import Backend
from facility.settings import SiteSettings


@dataclass(frozen=True)
class Kind:
    """Everything the processes need to know about one kind of backend."""

    name: str
    label: str  # where users are told the backend runs, in the form and the Dask panel
    is_batch: bool  # notebooks are batch jobs (batchspawner reports back through the hub's API)
    runs_on_this_host: bool  # `af up` runs its dask-gateway here (Kubernetes gateways run in the cluster)
    settings: type[SiteSettings]
    # "module:function" (fac, backend, request, parent spawner) -> (spawner class, its config)
    notebook_child: str
    # "module:function" (c, fac, backend, runtime, state folder): dask-gateway-server's configuration
    gateway: str
    # "module:function" (af.run's RunRequest) running a notebook headless; "" when `af run` cannot
    runner: str = ""
    queue_label: str = "Queue"  # what the form calls backend.queues
    # "module:function" async (fac, backend, request, username, home_dir_template) ->
    # backends.common.wait.Estimate: the predicted wait the spawn form shows; "" when the kind has none
    wait: str = ""

    def label_of(self, backend: Backend) -> str:
        return self.settings.of(backend).kind_label(self.label)

    def site_settings(self, backend: Backend) -> SiteSettings:
        return self.settings.of(backend)

    def load(self, part: str) -> Any:
        """The function a part names (notebook_child, gateway, runner or wait), imported now."""
        reference = getattr(self, part)
        if not reference:
            raise LookupError(f"backends of kind {self.name} have no {part}")
        module, _, name = reference.partition(":")
        return getattr(importlib.import_module(module), name)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "local",
            "this machine",
            is_batch=False,
            runs_on_this_host=True,
            settings=LocalSettings,
            notebook_child="backends.local.spawner:local_child",
            gateway="backends.local.gateway:configure",
            runner="backends.local.runner:run_local",
        ),
        Kind(
            "kubernetes",
            "cloud",
            is_batch=False,
            runs_on_this_host=False,
            settings=KubernetesSettings,
            notebook_child="backends.kubernetes.spawner:kubernetes_child",
            gateway="backends.kubernetes.gateway:configure_backend",
        ),
        Kind(
            "slurm",
            "HPC / Slurm",
            is_batch=True,
            runs_on_this_host=True,
            settings=SlurmSettings,
            notebook_child="backends.slurm.spawner:slurm_child",
            gateway="backends.slurm.gateway:configure",
            runner="backends.slurm.runner:run_slurm",
            queue_label="Partition",
            wait="backends.slurm.wait:estimate",
        ),
        Kind(
            "htcondor",
            "grid / HTCondor",
            is_batch=True,
            runs_on_this_host=True,
            settings=HTCondorSettings,
            notebook_child="backends.htcondor.spawner:htcondor_child",
            gateway="backends.htcondor.gateway:configure",
            runner="backends.htcondor.runner:run_htcondor",
            wait="backends.htcondor.wait:estimate",
        ),
    )
}


def kind_of(backend: Backend) -> Kind:
    """The Kind of a backend (the loader's schema only lets known kinds through)."""
    try:
        return KINDS[backend.kind]
    except KeyError:
        raise LookupError(f"backend {backend.name!r} has kind {backend.kind!r}; known: {', '.join(KINDS)}") from None
