"""Notebook-side Dask helpers: clusters on the user's gateways, the widget, the data lake, version checks.

The gateway server side lives in backends/ and gateway/; nothing here imports dask_gateway_server.
The helpers below load dask-gateway (and distributed) on first use only: the JupyterLab panel's
server extension imports this package at every notebook server start.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["available_backends", "gateway", "list_clusters", "new_cluster"]


def __getattr__(name: str) -> Any:
    # PEP 562: `from dask_backends import new_cluster` imports dask_backends.client only then.
    if name in __all__:
        return getattr(importlib.import_module("dask_backends.client"), name)
    raise AttributeError(f"module 'dask_backends' has no attribute {name!r}")
