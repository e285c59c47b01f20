"""The Kubernetes kind: notebook pods (KubeSpawner) and Dask pods (dask-gateway's KubeBackend)."""
