"""What the clusters of dask-gateway's Kubernetes backend hold (backends.common.held_clusters' shape).

KubeBackend keeps each cluster as a DaskCluster object (its informer's cache) and a
models.Cluster built from it; the worker pods are the controller's, and the gateway's
ServiceAccount may not list pods. So a cluster holds its target, the object's spec.replicas,
which the controller keeps its worker pods at; those workers count as running once the cluster
runs (a pod still being placed counts too).
"""

from __future__ import annotations

from typing import Any

from dask_gateway_server.models import ClusterStatus
from traitlets.config import LoggingConfigurable

from backends.common.held_clusters import HeldCluster, worker_size
from backends.common.mixed_in import mixed_in


def _held(cluster: Any, obj: dict[str, Any] | None) -> HeldCluster:
    replicas = int(((obj or {}).get("spec") or {}).get("replicas") or 0)
    state = "running" if cluster.status == ClusterStatus.RUNNING else "pending"
    cores, memory, gpus = worker_size(cluster.config)
    return HeldCluster(
        name=cluster.name,
        username=cluster.username,
        status=cluster.status.name.lower(),
        target=replicas,
        workers={state: replicas} if replicas else {},
        worker_cores=cores,
        worker_memory=memory,
        worker_gpus=gpus,
        options=dict(cluster.options or {}),
    )


class KubeHoldings(LoggingConfigurable):
    def held_clusters(self) -> list[HeldCluster]:
        return [
            _held(c, self.informer.get(name))
            for name, c in list(self.clusters.items())
            if c.status <= ClusterStatus.RUNNING
        ]

    def held_cluster(self, name: str) -> HeldCluster | None:
        cluster = self.clusters.get(name)
        if cluster is None or cluster.status > ClusterStatus.RUNNING:
            return None
        return _held(cluster, self.informer.get(name))


def with_kube_holdings(backend_class: str | type) -> type:
    return mixed_in(KubeHoldings, backend_class)
