"""dask-gateway cluster options derived from a facility.yaml backend.

The same limits as the spawn form: the gateway refuses values outside them, and refuses users
whose groups may not use the backend, whatever client they call it from.
"""

from __future__ import annotations

from typing import Any

from dask_gateway_server.options import Integer, Options, Select

from facility.model import Backend, Facility, Range


class NotAllowedError(ValueError):
    """The user may not start clusters on this backend."""


def _integer(field: str, rng: Range, label: str) -> Integer:
    return Integer(field, default=rng.default, min=rng.min, max=rng.max, label=label)


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
        groups = set(getattr(user, "groups", ()) or ())
        if not backend.allows_user(groups, is_admin=getattr(user, "admin", False)):
            raise NotAllowedError(
                f"user {user.name!r} may not start clusters on {backend.name!r}; "
                f"it is open to the groups {', '.join(backend.allowed_groups)}"
            )
        return cluster_config(fac, backend, options)

    return Options(*fields, handler=handler)


def cluster_config(fac: Facility, backend: Backend, options: Any) -> dict[str, Any]:
    """ClusterConfig overrides for validated options."""
    config: dict[str, Any] = {
        "worker_cores": options.worker_cores,
        "worker_memory": f"{options.worker_memory_gb}G",
        "environment": {
            "AF_BACKEND": backend.name,
            "AF_IMAGE": fac.image(options.image).registry,
        },
    }
    gpus = getattr(options, "worker_gpus", 0)
    if gpus:
        config["environment"]["AF_WORKER_GPUS"] = str(gpus)
    return config
