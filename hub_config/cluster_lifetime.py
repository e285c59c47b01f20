"""The hub's half of "a cluster stops with its server" (facility.cluster_lifetime).

JupyterHub runs Spawner.post_stop_hook whenever a server really stops: the user or an admin
stops it, the idle culler does, or its process or job ends. It does not run on the hub's own
restarts (cleanup_servers is off: servers keep running), so those leave clusters alone too.

GET /hub/api/af/clusters tells the home page, in plain words, which of the user's clusters still
run while their server is stopped (those started with outlive_server=True, or left from before).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from facility.cluster_lifetime import SERVER_STOPPED_PATH, USER_CLUSTERS_PATH, gateway_url
from facility.runtime import GatewayAddress

log = logging.getLogger("JupyterHub")
TIMEOUT = 15  # seconds per gateway; a gateway that is down must not hold up the stop much longer
ROUTE = r"/api/af/clusters"


async def _ask(gateway: GatewayAddress, method: str, path: str, user: str, timeout: float = TIMEOUT) -> Any:
    """A gateway's af route for `user`, with the gateway's own hub service token; its JSON answer."""
    request = HTTPRequest(
        gateway_url(gateway.url, path, user),
        method=method,
        body=b"" if method == "POST" else None,
        headers={"Authorization": f"Bearer {gateway.api_token}"},
        request_timeout=timeout,
    )
    return json.loads((await AsyncHTTPClient().fetch(request)).body)


async def _report(name: str, gateway: GatewayAddress, user: str) -> None:
    try:
        result = await _ask(gateway, "POST", SERVER_STOPPED_PATH, user)
    except (HTTPClientError, OSError) as exc:
        log.warning("Could not stop %s's Dask clusters on gateway %s: %s", user, name, exc)
        return
    if result["stopped"] or result["kept"]:
        log.info("%s's server stopped; gateway %s stopped clusters %s, kept %s", user, name, *result.values())


def stop_clusters_hook(gateways: dict[str, GatewayAddress]) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A Spawner.post_stop_hook: every gateway stops the user's clusters not marked to outlive the server."""

    async def hook(spawner: Any) -> None:
        user = spawner.user.name
        await asyncio.gather(*(_report(name, gw, user) for name, gw in gateways.items()))

    return hook


def _idle(minutes: int) -> str:
    return f"idle clusters there stop after {minutes} minutes" if minutes else "they run until stopped"


def lingering_message(counts: dict[str, int], idle_minutes: dict[str, int]) -> str:
    """What the home page says about clusters that run while the user's server is stopped."""
    total = sum(counts.values())
    if not total:
        return ""
    where = "; ".join(f"{n} on backend {b!r} ({_idle(idle_minutes[b])})" for b, n in counts.items() if n)
    it = "it" if total == 1 else "them"
    return (
        f"Your notebook server is stopped, but you still have {total} Dask cluster{'s' * (total > 1)} "
        f"running: {where}. To stop {it} now, start your server and stop {it} in the Dask panel."
    )


class LingeringClustersHandler(APIHandler):
    def initialize(self, gateways: dict[str, GatewayAddress]) -> None:
        self.gateways = gateways

    async def get(self) -> None:
        user = self.current_user
        if user is None or getattr(user, "kind", "") != "user":
            raise web.HTTPError(403, "Log in to see your Dask clusters.")
        if not self.has_scope(f"read:servers!user={user.name}"):
            raise web.HTTPError(403, "This token may not read your servers.")
        names = list(self.gateways)
        answers = await asyncio.gather(
            *(_ask(self.gateways[n], "GET", USER_CLUSTERS_PATH, user.name, timeout=5) for n in names),
            return_exceptions=True,
        )
        counts = {n: len(a["clusters"]) for n, a in zip(names, answers, strict=True) if isinstance(a, dict)}
        unreachable = [n for n, a in zip(names, answers, strict=True) if not isinstance(a, dict)]
        fac = user.spawner.facility
        idle = {n: fac.backend(n).dask.idle_timeout_minutes for n in counts}
        running = user.spawner.active
        message = "" if running else lingering_message(counts, idle)
        self.finish(json.dumps({"clusters": counts, "unreachable": unreachable, "message": message}))


def handlers(gateways: dict[str, GatewayAddress]) -> list[tuple[str, type, dict[str, Any]]]:
    """For c.JupyterHub.extra_handlers (the hub prefixes /hub)."""
    return [(ROUTE, LingeringClustersHandler, {"gateways": gateways})]
