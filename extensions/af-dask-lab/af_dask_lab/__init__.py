"""The analysis facility's JupyterLab Dask panel: a prebuilt labextension and its server extension."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "af-dask-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "af_dask_lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from af_dask_lab import kernel_stops
    from af_dask_lab.handlers import setup_handlers

    setup_handlers(server_app.web_app, kernel_stops.install(server_app))
    server_app.log.info("af_dask_lab: Dask panel handlers registered under /af-dask/")
