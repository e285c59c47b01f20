"""A jupyter-server extension of `af-singleuser`: a kernel running a cell counts as activity.

jupyter-server moves a kernel's last activity only when the kernel sends a message. A cell that
computes without output (a long fit, a `time.sleep` loop) sends none after "busy", so the server
looked idle to the hub and the idle culler stopped it mid-cell (jupyterhub-idle-culler#55).
While any kernel is busy, this sets the server setting `af_busy_kernels_last_activity` to now
every few seconds; ServerApp.last_activity() counts every setting ending in `_last_activity`,
and jupyterhub-singleuser reports that time to the hub.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tornado.ioloop import PeriodicCallback

SETTING = "af_busy_kernels_last_activity"
CHECK_SECONDS = 5  # well below any activity report interval (hub_config.services.activity_interval)
EXTENSION = "hub_config.busy_kernels"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": EXTENSION}]


def busy(kernel_manager: Any) -> bool:
    """Whether any kernel of this server is running a cell (its last status message said busy)."""
    kernels = (kernel_manager.get_kernel(k) for k in kernel_manager.list_kernel_ids())
    return any(getattr(k, "execution_state", None) == "busy" for k in kernels)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings

    def mark() -> None:
        if busy(serverapp.kernel_manager):
            settings[SETTING] = datetime.now(UTC)

    PeriodicCallback(mark, CHECK_SECONDS * 1000).start()
    serverapp.log.info("Busy kernels count as activity (checked every %d s)", CHECK_SECONDS)
