"""A cluster stops with its owner's notebook server, unless it was started to outlive it.

dask-gateway's REST API lets a user stop only their own clusters, and a hub restart is not a
stop, so the gateway cannot tell from its own API when a server ended. The hub can: its
post_stop_hook (hub_config.cluster_lifetime) runs only when a server really stops (the user, an
admin, the idle culler, a crash; not the hub's own restarts, which keep servers). It then posts
to the route this mixin adds (dask-gateway's documented hook: `Backend.setup(app)` may add
routes), with the gateway's own hub service token, which only the hub and this gateway hold.
USER_CLUSTERS_PATH lists a user's clusters with their workers and worker size (facility.ledger),
ALL_CLUSTERS_PATH every user's (the usage sampler), with the same token.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from backends.common.cluster_options import OUTLIVE_SERVER
from backends.common.held_clusters import HeldCluster
from backends.common.mixed_in import mixed_in
from facility.cluster_lifetime import ALL_CLUSTERS_PATH, SERVER_STOPPED_PATH, USER_CLUSTERS_PATH
from gateway.quota import cluster_entry


def outlives_server(cluster: HeldCluster) -> bool:
    """Whether its owner asked the cluster to keep running after their notebook server stops."""
    return bool(cluster.options.get(OUTLIVE_SERVER))


def _entry(cluster: HeldCluster) -> dict[str, Any]:
    return {"name": cluster.name, OUTLIVE_SERVER: outlives_server(cluster), **cluster_entry(cluster)}


class StopWithServerMixin(LoggingConfigurable):
    hub_token = Unicode("", config=True, help="The token the hub presents when it reports a stopped server.")

    async def setup(self, app: web.Application) -> None:
        await super().setup(app)
        if self.hub_token:
            app.router.add_post(SERVER_STOPPED_PATH, self._server_stopped)
            app.router.add_get(USER_CLUSTERS_PATH, self._user_clusters)
            app.router.add_get(ALL_CLUSTERS_PATH, self._all_clusters)

    def _from_hub(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {self.hub_token}".encode())

    def _clusters_of(self, request: web.Request) -> list[HeldCluster]:
        return [c for c in self.held_clusters() if c.username == request.match_info["user"]]

    async def _user_clusters(self, request: web.Request) -> web.Response:
        if not self._from_hub(request):
            return web.json_response({"error": "only the hub may list a user's clusters here"}, status=403)
        # With each cluster's workers and their size: the quota ledger of the hub and the other gateways.
        return web.json_response({"clusters": [_entry(c) for c in self._clusters_of(request)]})

    async def _all_clusters(self, request: web.Request) -> web.Response:
        if not self._from_hub(request):
            return web.json_response({"error": "only the hub may list the clusters here"}, status=403)
        users: dict[str, list[dict[str, Any]]] = {}
        for cluster in self.held_clusters():
            users.setdefault(cluster.username, []).append(_entry(cluster))
        return web.json_response({"users": users})

    async def _server_stopped(self, request: web.Request) -> web.Response:
        if not self._from_hub(request):
            return web.json_response({"error": "only the hub reports stopped servers"}, status=403)
        user = request.match_info["user"]
        mine = self._clusters_of(request)
        stopped = [c.name for c in mine if not outlives_server(c)]
        kept = [c.name for c in mine if outlives_server(c)]
        for name in stopped:
            await self.stop_cluster(name)
        if mine:
            self.log.info("%s's notebook server stopped: stopped clusters %s, kept %s", user, stopped, kept)
        return web.json_response({"stopped": stopped, "kept": kept})


def stopping_with_server(backend_class: str | type) -> type:
    """`backend_class` with StopWithServerMixin in front, under the same name (its config still applies)."""
    return mixed_in(StopWithServerMixin, backend_class)
