"""dask-gateway backends of the facility (local, Slurm, HTCondor, Kubernetes) and client helpers."""

from dask_backends.client import available_backends, gateway, list_clusters, new_cluster

__all__ = ["available_backends", "gateway", "list_clusters", "new_cluster"]
