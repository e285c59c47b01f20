"""Dask cluster options derived from a facility.yaml backend, as plain data.

The same limits as the spawn form. The gateway (gateway.options) turns the fields into
dask-gateway-server's Options and refuses values outside them, users whose groups may not use
the backend, and values above the user's allowance (facility.allowances). The notebook side
(dask_backends.catalog) shows the same fields without importing the gateway server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from backends.common import cluster_names
from facility import allowances
from facility.events import Event, EventStore, events_path
from facility.model import Backend, Facility, Range
from facility.runtime import ENV_RUNTIME, read_runtime

# The cluster option that keeps a cluster running after its owner's notebook server stops
# (gateway.server_lifetime stops the others when the hub reports the stop).
OUTLIVE_SERVER = "outlive_server"


class NotAllowedError(ValueError):
    """The user may not start clusters on this backend, or not with these options."""


@dataclass(frozen=True)
class OptionField:
    """One cluster option: an integer within a range, a choice among names, a yes/no flag or a
    cluster's readable name (text)."""

    field: str
    label: str
    default: Any
    limits: Range | None = None  # integers
    choices: tuple[str, ...] = ()  # selections
    flag: bool = False  # yes/no (default True or False)
    text: bool = False  # the cluster's name (backends.common.cluster_names)

    def specification(self) -> dict[str, Any]:
        """The field as dask-gateway's /api/v1/options answers it (the JupyterLab panel reads this)."""
        if self.limits is not None:
            spec: dict[str, Any] = {"type": "int", "min": self.limits.min, "max": self.limits.max}
        elif self.flag:
            spec = {"type": "bool"}
        elif self.text:
            # No max_length: dask-gateway's client builds its String field from every key of the
            # spec and refuses unknown ones; the panel knows the limit (cluster_names.MAX_LENGTH).
            spec = {"type": "string"}
        else:
            spec = {"type": "select", "options": list(self.choices)}
        return {"field": self.field, "label": self.label, "default": self.default, "spec": spec}


def _integer(field: str, rng: Range, label: str) -> OptionField:
    return OptionField(field, label, rng.default, limits=rng)


def worker_limits(backend: Backend) -> dict[str, Range]:
    return {
        "worker_cores": backend.dask.worker_cores,
        "worker_memory_gb": backend.dask.worker_memory_gb,
        "worker_gpus": backend.dask.worker_gpus,
    }


def option_fields(fac: Facility, backend: Backend) -> list[OptionField]:
    """The options form users fill in (from Python, the JupyterLab panel or the widget)."""
    limits = backend.dask
    images = [i.name for i in fac.images_for(backend)]
    default_image = fac.default_image.name if fac.default_image.name in images else images[0]
    fields = [
        # Empty: the gateway names the cluster with two words (cluster_names.checked_name).
        OptionField(cluster_names.FIELD, "Cluster name", "", text=True),
        _integer("worker_cores", limits.worker_cores, "Worker cores"),
        _integer("worker_memory_gb", limits.worker_memory_gb, "Worker memory (GB)"),
    ]
    if limits.worker_gpus.max:
        fields.append(_integer("worker_gpus", limits.worker_gpus, "Worker GPUs"))
    fields.append(OptionField("image", "Software image", default_image, choices=tuple(images)))
    fields.append(OptionField(OUTLIVE_SERVER, "Keep running after my notebook server stops", False, flag=True))
    return fields


def specification(fac: Facility, backend: Backend) -> list[dict[str, Any]]:
    return [f.specification() for f in option_fields(fac, backend)]


def allowed_for(fac: Facility, backend: Backend, user: Any) -> Backend:
    """The backend narrowed to this gateway user's allowance; NotAllowedError if they may not use it."""
    groups = set(getattr(user, "groups", ()) or ())
    narrowed = allowances.for_user(fac, backend, groups, bool(getattr(user, "admin", False)))
    if narrowed is None:
        why = (
            f"it is open to the groups {', '.join(backend.allowed_groups)}"
            if not backend.allows_user(groups)
            else "no allowance of your groups covers it"
        )
        raise NotAllowedError(f"user {user.name!r} may not start clusters on {backend.name!r}; {why}")
    event = event_of(user.name)
    if event is None:
        return narrowed
    # An event's participant: only during the event, and within its allowance (facility.events).
    refusal = event.refusal()
    if refusal:
        raise NotAllowedError(refusal)
    within = allowances.within(fac, narrowed, event.allowance, groups)
    if within is None:
        raise NotAllowedError(
            f"user {user.name!r} may not start clusters on {backend.name!r}; the event's allowance does not cover it"
        )
    return within


def event_of(username: str) -> Event | None:
    """The event `username` takes part in, from the state folder of the gateway's facility (none
    where no runtime.json is set, as in a notebook)."""
    if not os.environ.get(ENV_RUNTIME):
        return None
    return EventStore(events_path(read_runtime().state_path)).event_of(username)


def check_allowance(fac: Facility, backend: Backend, options: Any, user: Any) -> Backend:
    """Refuse options above the user's allowance (the fields hold the backend's own limits)."""
    narrowed = allowed_for(fac, backend, user)
    for field, rng in worker_limits(narrowed).items():
        value = getattr(options, field, 0)
        if not rng.allows(value):
            raise NotAllowedError(
                f"{field}: {value} is more than your groups allow on {backend.name!r}; "
                f"choose between {rng.min} and {rng.max}"
            )
    allowed_images = [i.name for i in fac.images_for(narrowed)]
    if options.image not in allowed_images:
        raise NotAllowedError(
            f"image: {options.image!r} is not available to your groups; choose one of: {', '.join(allowed_images)}"
        )
    return narrowed


# distributed's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (its config
# distributed.nanny.pre-spawn-environ). Setting any glibc malloc threshold turns off glibc's dynamic
# mmap threshold (mallopt(3)), so the analysis' large awkward/numpy temporaries are mmap'ed and
# page-faulted anew each time: the ttbar analysis ran at about half speed on such a worker
# (benchmarks/dask_efficiency.py). None keeps the nanny from setting it (distributed's way to unset a
# pre-spawn-environ key); a value the job's own environment already has would stay.
WORKER_ENVIRONMENT = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": "{'MALLOC_TRIM_THRESHOLD_': None}"}


def cluster_config(
    fac: Facility, backend: Backend, options: Any, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """ClusterConfig overrides for validated options; `image` and `worker_gpus` are traits of the
    kinds' cluster configs (backends.common.cluster_config.ImageAndGpusMixin)."""
    image = fac.image(options.image).registry
    return {
        "cluster_max_workers": backend.dask.workers.max,
        "worker_cores": options.worker_cores,
        "worker_memory": f"{options.worker_memory_gb}G",
        "image": image,
        "worker_gpus": int(getattr(options, "worker_gpus", 0) or 0),
        "environment": {**WORKER_ENVIRONMENT, "AF_BACKEND": backend.name, "AF_IMAGE": image, **(environment or {})},
    }
