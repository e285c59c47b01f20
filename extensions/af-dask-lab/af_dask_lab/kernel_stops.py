"""Why a kernel of this notebook server last died: its server's memory limit, or something else.

A local notebook server's processes share a memory cgroup (backends.local.memory_limit); past its
limit the Linux kernel's OOM killer stops the largest with SIGKILL, often the notebook's kernel.
jupyter-server then restarts the kernel and JupyterLab says only that it "appears to have died".
The panel's frontend (src/memory.ts) asks GET /af-dask/kernels/<id>/last-stop when a kernel
restarts that way, and shows the limit in plain words instead of JupyterLab's dialog.

The memory limit stopped a kernel when its process ended by SIGKILL (as the OOM killer ends it) and
the cgroup's count of OOM kills rose since the kernel (re)started. A kernel that ended otherwise
(an error, os._exit, a kill -9 with no OOM kill counted) keeps JupyterLab's dialog. The count does
not say which process was stopped: a kernel killed by SIGKILL after the limit stopped one of its
subprocesses would be taken for stopped by the limit too.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from backends.local.memory_message import CGROUP_VARIABLE, LIMIT_VARIABLE, limit_words, oom_kills, stopped_words

# jupyter-server emits this event when a kernel starts (and at each restart, start, shutdown ...).
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
TITLE = "Kernel stopped at the memory limit"


@dataclass(frozen=True)
class Stop:
    """One automatic restart of a kernel: how its process ended and the cgroup's OOM kills around it."""

    exit_code: int | None
    oom_kills_before: int | None
    oom_kills_after: int | None

    @property
    def by_memory_limit(self) -> bool:
        before, after = self.oom_kills_before, self.oom_kills_after
        killed = self.exit_code == -signal.SIGKILL
        return killed and before is not None and after is not None and after > before


def answer(stop: Stop | None, environ: Any = os.environ) -> dict[str, Any]:
    """The route's reply: whether the memory limit stopped the kernel, and if so the words to show."""
    limit = limit_words(environ.get(LIMIT_VARIABLE))
    if stop is None or limit is None or not stop.by_memory_limit:
        return {"memory_limit": False, "limit": limit}
    return {"memory_limit": True, "limit": limit, "title": TITLE, "message": stopped_words(limit)}


class KernelStops:
    """Watches every kernel of the server: the cgroup's OOM kills when it starts, and at each
    automatic restart (jupyter-client's restart callback, fired after the dead process was polled
    and before the new one starts) how it ended."""

    def __init__(self, kernel_manager: Any, environ: Any = os.environ) -> None:
        self.kernel_manager = kernel_manager
        self.cgroup = environ.get(CGROUP_VARIABLE)
        self.baseline: dict[str, int | None] = {}
        self.last: dict[str, Stop] = {}

    async def on_kernel_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        # jupyter-events calls this with keywords. An error here would fail the kernel's start.
        kernel_id = data.get("kernel_id")
        if data.get("action") == "start" and data.get("status") == "success" and kernel_id:
            try:
                self.watch(kernel_id)
            except Exception:  # noqa: BLE001 - the kernel runs on, only unexplained if it dies
                self.kernel_manager.log.exception("af_dask_lab: cannot watch kernel %s", kernel_id)

    def watch(self, kernel_id: str) -> None:
        if kernel_id in self.baseline or kernel_id not in self.kernel_manager:
            return
        self.baseline[kernel_id] = oom_kills(self.cgroup)
        kernel = self.kernel_manager.get_kernel(kernel_id)
        kernel.add_restart_callback(lambda: self.restarted(kernel_id, kernel), "restart")

    def restarted(self, kernel_id: str, kernel: Any) -> None:
        process = getattr(kernel.provisioner, "process", None)  # a LocalProvisioner's Popen
        now = oom_kills(self.cgroup)
        before = self.baseline.get(kernel_id)
        self.last[kernel_id] = Stop(getattr(process, "returncode", None), before, now)
        self.baseline[kernel_id] = now


def install(server_app: Any) -> KernelStops:
    stops = KernelStops(server_app.kernel_manager)
    server_app.event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=stops.on_kernel_action)
    return stops
