"""Notebook-side Dask helpers: clusters on the user's gateways, the widget, the data lake, version checks.

The gateway server side lives in backends/ and gateway/; nothing here imports dask_gateway_server.
"""

from dask_backends.client import available_backends, gateway, list_clusters, new_cluster

__all__ = ["available_backends", "gateway", "list_clusters", "new_cluster"]
