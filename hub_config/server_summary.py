"""What the home page says about the user's running server: backend, size, age, running kernels.

GET /hub/api/af/server answers for the logged-in user's default server. The kernels are asked
from the server itself (jupyter-server's /api/kernels) with the server's own token, or, after a
hub restart (the hub keeps no plain copy of that token), a one-minute token of the user's that may
only reach that server. The Dask clusters come from /hub/api/af/clusters (cluster_lifetime.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from hub_config.spawn_words import size_words

ROUTE = r"/api/af/server"


def age_words(started: datetime | None, now: datetime | None = None) -> str:
    """How long ago a server started, e.g. "started 3 min ago", "started 2 h 5 min ago"."""
    if started is None:
        return ""
    now = now or datetime.now(UTC)
    if started.tzinfo is None:  # the hub's database keeps naive UTC times
        started = started.replace(tzinfo=UTC)
    minutes = max(int((now - started).total_seconds() // 60), 0)
    if minutes < 1:
        return "started less than a minute ago"
    hours, minutes = divmod(minutes, 60)
    return "started " + (f"{hours} h {minutes} min ago" if hours else f"{minutes} min ago")


def summary_of(spawner: Any) -> dict[str, Any]:
    """The home page's words for a server of FacilitySpawner (empty when it has no options)."""
    options = spawner.user_options or {}
    if not options.get("backend"):
        return {}
    try:
        label = spawner.facility.backend(options["backend"]).label
    except (KeyError, LookupError):
        label = options["backend"]  # the backend left facility.yaml while the server runs
    started = spawner.orm_spawner.started if spawner.orm_spawner is not None else None
    return {
        "backend": options["backend"],
        "backend_label": label,
        "size": size_words(options),
        "image": options.get("image", ""),
        "started": started.replace(tzinfo=UTC).isoformat() if started else None,
        "age": age_words(started),
    }


async def kernel_counts(server_url: str, token: str) -> dict[str, int] | None:
    """Running and busy kernels of a notebook server; None when it does not answer."""
    request = HTTPRequest(
        server_url.rstrip("/") + "/api/kernels", headers={"Authorization": f"token {token}"}, request_timeout=5
    )
    try:
        kernels = json.loads((await AsyncHTTPClient().fetch(request)).body)
    except (HTTPClientError, OSError, ValueError):
        return None
    return {"kernels": len(kernels), "busy": sum(k.get("execution_state") == "busy" for k in kernels)}


class ServerSummaryHandler(APIHandler):
    async def get(self) -> None:
        user = self.current_user
        if user is None or getattr(user, "kind", "") != "user":
            raise web.HTTPError(403, "Log in to see your server.")
        if not self.has_scope(f"read:servers!user={user.name}"):
            raise web.HTTPError(403, "This token may not read your servers.")
        spawner = user.spawner
        answer: dict[str, Any] = {"running": bool(spawner.ready), **summary_of(spawner)}
        if spawner.ready and spawner.server is not None:
            token = spawner.api_token or user.new_api_token(
                scopes=[f"access:servers!server={user.name}/"], expires_in=60, note="home page: kernel count"
            )
            answer.update(await kernel_counts(spawner.server.url, token) or {"kernels": None, "busy": None})
        self.finish(json.dumps(answer))


def handlers() -> list[tuple[str, type]]:
    """For c.JupyterHub.extra_handlers (the hub prefixes /hub)."""
    return [(ROUTE, ServerSummaryHandler)]
