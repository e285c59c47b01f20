"""What a gateway's clusters hold, in one shape for every kind of dask-gateway backend.

The quota (gateway.quota), stopping clusters with their server (gateway.server_lifetime) and the
gateway's metrics (monitoring.gateway) read a user's clusters and their workers. dask-gateway's
database backends (local processes, Slurm, HTCondor) keep them in `self.db`; its Kubernetes
backend keeps DaskCluster objects instead (backends.kubernetes.holdings). Each kind's mixin
gives `held_clusters()` and `held_cluster(name)`; `DatabaseHoldings` is the database one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dask_gateway_server.backends.db_base import JobStatus
from traitlets.config import LoggingConfigurable

from backends.common import cluster_names
from backends.common.mixed_in import mixed_in

# dask-gateway's job states, in the words the dashboards use.
WORKER_STATES = {
    JobStatus.CREATED: "pending",
    JobStatus.SUBMITTED: "pending",
    JobStatus.RUNNING: "running",
    JobStatus.CLOSING: "stopping",
}


@dataclass(frozen=True)
class HeldCluster:
    """One active cluster: its owner, its status, its workers by state and the size of one."""

    name: str
    username: str
    status: str  # "pending", "running" or "stopping"
    target: int  # the workers asked for
    workers: dict[str, int] = field(default_factory=dict)  # state -> count, active workers only
    worker_cores: float = 0.0
    worker_memory: float = 0.0  # bytes
    worker_gpus: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def held(self) -> int:
        """Workers the cluster holds: those running or starting, or its target if higher."""
        return max(self.target, sum(self.workers.values()))

    @property
    def title(self) -> str:
        """The name people see: the user's `cluster_name` or two words from the id."""
        return cluster_names.display_name(self.options, self.name)

    @property
    def running(self) -> int:
        return self.workers.get("running", 0)


def worker_size(config: dict[str, Any] | None) -> tuple[float, float, float]:
    """(cores, memory bytes, GPUs) of one worker, from a cluster's ClusterConfig."""
    config = config or {}
    return (
        float(config.get("worker_cores") or 0),
        float(config.get("worker_memory") or 0),
        float(config.get("worker_gpus") or 0),
    )


def from_record(cluster: Any) -> HeldCluster:
    """A cluster of dask-gateway's database backends (db_base.Cluster)."""
    workers: dict[str, int] = {}
    for worker in cluster.active_workers():
        state = WORKER_STATES.get(worker.status, "stopping")
        workers[state] = workers.get(state, 0) + 1
    cores, memory, gpus = worker_size(cluster.config)
    return HeldCluster(
        name=cluster.name,
        username=cluster.username,
        status=cluster.model_status.name.lower(),
        target=int(cluster.count or 0),
        workers=workers,
        worker_cores=cores,
        worker_memory=memory,
        worker_gpus=gpus,
        options=dict(cluster.options or {}),
    )


class DatabaseHoldings(LoggingConfigurable):
    """held_clusters() of dask-gateway's database backends: their in-memory view of the database."""

    def held_clusters(self) -> list[HeldCluster]:
        return [from_record(c) for c in self.db.active_clusters()]

    def held_cluster(self, name: str) -> HeldCluster | None:
        record = self.db.get_cluster(name)
        return from_record(record) if record is not None and record.is_active() else None


def with_database_holdings(backend_class: str | type) -> type:
    return mixed_in(DatabaseHoldings, backend_class)
