"""The contract between the hub and the gateways for "a cluster stops with its server".

When a user's notebook server stops, the hub (hub_config.cluster_lifetime, its post_stop_hook)
posts to each gateway's SERVER_STOPPED_PATH with that gateway's own hub service token; the
gateway (gateway.server_lifetime) stops that user's clusters, except those whose cluster option
`outlive_server` (backends.common.cluster_options.OUTLIVE_SERVER) is set. USER_CLUSTERS_PATH
lists a user's live clusters, for the hub's home page to say which ones still run (and for the
quota's ledger, facility.ledger); ALL_CLUSTERS_PATH every user's, for the usage sampler.
"""

from __future__ import annotations

from urllib.parse import quote

SERVER_STOPPED_PATH = "/api/af/server-stopped/{user}"  # POST
USER_CLUSTERS_PATH = "/api/af/clusters/{user}"  # GET
ALL_CLUSTERS_PATH = "/api/af/clusters"  # GET: {"users": {user: [cluster, ...]}}


def gateway_url(gateway_url: str, path: str, user: str) -> str:
    """`path` for `user` on a gateway (its proxy forwards /api to the gateway's API)."""
    return gateway_url.rstrip("/") + path.format(user=quote(user, safe=""))
