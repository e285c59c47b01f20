"""dask-gateway cluster options derived from a facility.yaml backend.

The same limits as the spawn form: the gateway refuses values outside them, refuses users whose
groups may not use the backend, and holds each user to their groups' allowance
(facility.allowances), whatever client they call it from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dask_gateway_server.options import Integer, Options, Select

from dask_backends.data import data_environment
from facility import allowances
from facility.model import Backend, Facility, Range


class NotAllowedError(ValueError):
    """The user may not start clusters on this backend, or not with these options."""


def _integer(field: str, rng: Range, label: str) -> Integer:
    return Integer(field, default=rng.default, min=rng.min, max=rng.max, label=label)


def _limits(backend: Backend) -> dict[str, Range]:
    return {
        "worker_cores": backend.dask.worker_cores,
        "worker_memory_gb": backend.dask.worker_memory_gb,
        "worker_gpus": backend.dask.worker_gpus,
    }


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
    return narrowed


def cluster_options(fac: Facility, backend: Backend) -> Options:
    """The options form users fill in (from Python, the JupyterLab panel or the widget)."""
    limits = backend.dask
    images = [i.name for i in fac.images_for(backend)]
    default_image = fac.default_image.name if fac.default_image.name in images else images[0]
    fields = [
        _integer("worker_cores", limits.worker_cores, "Worker cores"),
        _integer("worker_memory_gb", limits.worker_memory_gb, "Worker memory (GB)"),
    ]
    if limits.worker_gpus.max:
        fields.append(_integer("worker_gpus", limits.worker_gpus, "Worker GPUs"))
    fields.append(Select("image", images, default=default_image, label="Software image"))

    def handler(options: Any, user: Any) -> dict[str, Any]:
        narrowed = allowed_for(fac, backend, user)
        # The fields above hold the backend's limits; the user's allowance may be narrower.
        for field, rng in _limits(narrowed).items():
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
        return cluster_config(fac, narrowed, options)

    return Options(*fields, handler=handler)


def cluster_options_per_user(fac: Facility, backend: Backend) -> Callable[[Any], Options]:
    """For dask-gateway's Backend.cluster_options: each user's form shows only their allowance."""

    def for_user(user: Any) -> Options:
        try:
            return cluster_options(fac, allowed_for(fac, backend, user))
        except NotAllowedError:
            return cluster_options(fac, backend)  # its handler refuses, with the reason

    return for_user


# distributed's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (its config
# distributed.nanny.pre-spawn-environ). Setting any glibc malloc threshold turns off glibc's dynamic
# mmap threshold (mallopt(3)), so the analysis' large awkward/numpy temporaries are mmap'ed and
# page-faulted anew each time: the ttbar analysis ran at about half speed on such a worker
# (benchmarks/dask_efficiency.py). None unsets it, the way distributed documents.
WORKER_ENVIRONMENT = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": "{'MALLOC_TRIM_THRESHOLD_': None}"}


def cluster_config(fac: Facility, backend: Backend, options: Any) -> dict[str, Any]:
    """ClusterConfig overrides for validated options."""
    config: dict[str, Any] = {
        "cluster_max_workers": backend.dask.workers.max,
        "worker_cores": options.worker_cores,
        "worker_memory": f"{options.worker_memory_gb}G",
        "environment": {
            **WORKER_ENVIRONMENT,
            "AF_BACKEND": backend.name,
            "AF_IMAGE": fac.image(options.image).registry,
        },
    }
    gpus = getattr(options, "worker_gpus", 0)
    if gpus:
        config["environment"]["AF_WORKER_GPUS"] = str(gpus)
    if backend.kind == "local":
        # Workers on this host read the running facility's data lake (its effective ports); batch and
        # cloud workers get their site's cache from facility.yaml (dask_backends.container).
        config["environment"].update(data_environment(fac, backend))
    return config
