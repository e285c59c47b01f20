"""Where Dask schedulers and workers listen: the host the backend needs, never every interface.

dask-gateway passes its backend's `default_host` to the scheduler (`--host`, its dashboard and
API) and to the workers' dashboards, but not to the workers themselves, which then listen on all
interfaces. `ListenHostMixin` gives workers (and their nannies) `--host` too: on the local
backend that is loopback, where the scheduler already is. The jobqueue backends' `0.0.0.0` is
their node's address, known only when the job starts: `NodeAddressMixin` runs the commands through
backends.common.node_address, which puts the node's address in its place. Kubernetes pods need
neither: each has a network namespace of its own, whose interfaces are the pod's address and loopback.
"""

from __future__ import annotations

from typing import Any


class ListenHostMixin:
    """Workers and nannies listen on the backend's `default_host`, as its schedulers do."""

    default_host: str

    def get_worker_command(self, cluster: Any, worker_name: str, scheduler_address: str | None = None) -> list[str]:
        command = super().get_worker_command(cluster, worker_name, scheduler_address)  # type: ignore[misc]
        return [*command, "--host", self.default_host]


class NodeAddressMixin(ListenHostMixin):
    """Batch jobs bind to their node's address (the one distributed advertises), not all interfaces."""

    def get_scheduler_command(self, cluster: Any) -> list[str]:
        return ["python", "-m", "backends.common.node_address", "--", *super().get_scheduler_command(cluster)]  # type: ignore[misc]

    def get_worker_command(self, cluster: Any, worker_name: str, scheduler_address: str | None = None) -> list[str]:
        towards = scheduler_address or cluster.scheduler_address
        command = super().get_worker_command(cluster, worker_name, scheduler_address)
        return ["python", "-m", "backends.common.node_address", "--towards", towards, "--", *command]
