"""The contract between the hub and the gateways for "a cluster stops with its server".

When a user's notebook server stops, the hub (hub_config.cluster_lifetime, its post_stop_hook)
posts to each gateway's SERVER_STOPPED_PATH with that gateway's own hub service token; the
gateway (gateway.server_lifetime) stops that user's clusters, except those whose cluster option
`outlive_server` (backends.common.cluster_options.OUTLIVE_SERVER) is set.
"""

from __future__ import annotations

from urllib.parse import quote

SERVER_STOPPED_PATH = "/api/af/server-stopped/{user}"


def server_stopped_url(gateway_url: str, user: str) -> str:
    """Where the hub reports that `user`'s notebook server stopped (the gateway's proxy forwards /api)."""
    return gateway_url.rstrip("/") + SERVER_STOPPED_PATH.format(user=quote(user, safe=""))
