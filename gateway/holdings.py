"""The held_clusters() view (backends.common.held_clusters) for whichever dask-gateway backend class
a gateway runs: its Kubernetes backend's, or the database backends' (local, Slurm, HTCondor)."""

from __future__ import annotations

from dask_gateway_server.backends.kubernetes import KubeBackend
from traitlets.utils.importstring import import_item

from backends.common.held_clusters import with_database_holdings
from backends.kubernetes.holdings import with_kube_holdings


def with_holdings(backend_class: str | type) -> type:
    base = import_item(backend_class) if isinstance(backend_class, str) else backend_class
    if issubclass(base, KubeBackend):
        return with_kube_holdings(base)
    return with_database_holdings(base)
