"""Notebook-side helpers: a Dask cluster on any backend the user may use, in one line.

    from dask_backends import new_cluster
    cluster = new_cluster("local", workers=2, worker_cores=1)
    client = cluster.get_client()

The spawner puts the user's gateways in $AF_DASK_GATEWAYS; the user's own JupyterHub token
($JUPYTERHUB_API_TOKEN) authenticates every call, so users only ever see their own clusters.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

from dask_gateway import JupyterHubAuth

from dask_backends.addresses import (  # noqa: F401  (re-exported: the names notebooks import from here)
    ENV_DASHBOARDS,
    ENV_GATEWAYS,
    available_backends,
    dashboard_address,
    gateway_address,
)
from dask_backends.safe_gateway import SafeGateway, SafeGatewayCluster
from dask_backends.tokens import ENV_TOKEN_FILE, ship_token


class GatewayUnavailable(ConnectionError):
    """The backend's dask-gateway does not answer."""


def gateway(backend: str | None = None, api_token: str | None = None) -> SafeGateway:
    """A dask_gateway.Gateway for a backend (default: the notebook's own backend).

    A SafeGateway (dask_backends.safe_gateway): it and its clusters never hang the kernel when
    garbage-collected on their event-loop thread.
    """
    name, address = gateway_address(backend)
    try:
        # Probe first so a gateway that is down fails here, clearly, not deep inside dask.
        with urllib.request.urlopen(f"{address}/api/health", timeout=10):  # noqa: S310 - address from the hub
            pass
    except OSError as exc:
        raise GatewayUnavailable(
            f"the dask-gateway of backend {name!r} at {address} does not answer ({exc}); "
            "the facility may be down: ask its operator, or run `af status` on the facility host"
        ) from None
    return SafeGateway(
        address=address,
        public_address=dashboard_address(name),  # so cluster.dashboard_link opens through the hub
        auth=JupyterHubAuth(api_token=api_token),
        asynchronous=False,
    )


def new_cluster(
    backend: str | None = None,
    workers: int = 0,
    api_token: str | None = None,
    shutdown_on_close: bool = True,
    **options: Any,
) -> SafeGatewayCluster:
    """Start a cluster on a backend with cluster options (worker_cores, worker_memory_gb, image, ...).

    With shutdown_on_close=False the cluster outlives this kernel; reconnect with gateway().connect(name).
    """
    gw = gateway(backend, api_token)
    cluster = gw.new_cluster(shutdown_on_close=shutdown_on_close, **options)
    if os.environ.get(ENV_TOKEN_FILE):
        # The user's access token reaches every worker as $BEARER_TOKEN_FILE (dask_backends.tokens).
        with cluster.get_client(set_as_default=False) as client:
            ship_token(client)
    if workers:
        cluster.scale(workers)
    return cluster


def list_clusters(backend: str | None = None, api_token: str | None = None) -> list[Any]:
    """This user's running clusters on one backend."""
    return gateway(backend, api_token).list_clusters()
