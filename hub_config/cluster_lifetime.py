"""The hub's half of "a cluster stops with its server" (facility.cluster_lifetime).

JupyterHub runs Spawner.post_stop_hook whenever a server really stops: the user or an admin
stops it, the idle culler does, or its process or job ends. It does not run on the hub's own
restarts (cleanup_servers is off: servers keep running), so those leave clusters alone too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from facility.cluster_lifetime import server_stopped_url
from facility.runtime import GatewayAddress

log = logging.getLogger("JupyterHub")
TIMEOUT = 15  # seconds per gateway; a gateway that is down must not hold up the stop much longer


async def _report(name: str, gateway: GatewayAddress, user: str) -> None:
    request = HTTPRequest(
        server_stopped_url(gateway.url, user),
        method="POST",
        body=b"",
        headers={"Authorization": f"Bearer {gateway.api_token}"},
        request_timeout=TIMEOUT,
    )
    try:
        reply = await AsyncHTTPClient().fetch(request)
    except (HTTPClientError, OSError) as exc:
        log.warning("Could not stop %s's Dask clusters on gateway %s: %s", user, name, exc)
        return
    result = json.loads(reply.body)
    if result["stopped"] or result["kept"]:
        log.info("%s's server stopped; gateway %s stopped clusters %s, kept %s", user, name, *result.values())


def stop_clusters_hook(gateways: dict[str, GatewayAddress]) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A Spawner.post_stop_hook: every gateway stops the user's clusters not marked to outlive the server."""

    async def hook(spawner: Any) -> None:
        user = spawner.user.name
        await asyncio.gather(*(_report(name, gw, user) for name, gw in gateways.items()))

    return hook
