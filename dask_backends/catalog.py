"""What a user may choose when starting a Dask cluster, per backend: shared by the JupyterLab
panel (af_dask_lab's server extension) and the notebook widget, so both offer the same choices.

Everything comes from facility.yaml (the same cluster options the backend's dask-gateway enforces)
and from $AF_DASK_GATEWAYS (the backends this user may use).
"""

from __future__ import annotations

from typing import Any

import facility
from backends.common.cluster_options import specification
from backends.registry import kind_of
from dask_backends.addresses import available_backends
from facility.model import Backend, Facility


def describe_backend(fac: Facility, backend: Backend, address: str) -> dict[str, Any]:
    """A JSON-ready description of one backend: labels, worker limits and cluster option fields."""
    workers = backend.dask.workers
    return {
        "name": backend.name,
        "label": backend.label,
        "kind": backend.kind,
        "kind_label": kind_of(backend).label_of(backend),
        "description": backend.description,
        "gateway": address,
        "workers": {"min": workers.min, "max": workers.max, "default": workers.default},
        "idle_timeout_minutes": backend.dask.idle_timeout_minutes,
        # Same spec format as dask-gateway's /api/v1/options: [{field, label, default, spec}].
        "options": specification(fac, backend),
    }


def current_facility() -> Facility:
    """facility.yaml ($AF_FACILITY) under facility.loader's reload policy: the panel polls often."""
    return facility.current()


def user_backends(fac: Facility | None = None) -> list[dict[str, Any]]:
    """The backends this notebook's user may start clusters on, in facility.yaml order."""
    fac = fac or current_facility()
    gateways = available_backends()
    return [describe_backend(fac, b, gateways[b.name]) for b in fac.backends if b.name in gateways]


def connect_code(backend: str, cluster_name: str) -> str:
    """Notebook code that connects a Dask client to a running cluster."""
    return (
        "from dask_backends import gateway\n\n"
        f"cluster = gateway({backend!r}).connect({cluster_name!r})\n"
        "client = cluster.get_client()\n"
        "client"
    )


def check_workers(backend: dict[str, Any], count: int) -> None:
    """Refuse a worker count outside the backend's limits, naming them."""
    limits = backend["workers"]
    if not isinstance(count, int) or isinstance(count, bool) or not limits["min"] <= count <= limits["max"]:
        raise ValueError(
            f"workers: {count!r} is out of range for {backend['name']!r}; "
            f"choose between {limits['min']} and {limits['max']}"
        )
