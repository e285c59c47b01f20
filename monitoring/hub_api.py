"""What the hub's REST API says about active notebook servers: for the exporter (the metrics
service's token) and the usage sampler (its own token)."""

from __future__ import annotations

import logging
from typing import Any

import requests

from facility.hub_services import hub_api_url
from facility.runtime import Runtime

HUB_TIMEOUT_S = 5
# JupyterHub's paginated answer ({"items", "_pagination"}); without it a listing stops at 200 users.
PAGINATED = "application/jupyterhub-pagination+json"

log = logging.getLogger(__name__)


def active_users(api: str, token: str) -> list[dict[str, Any]]:
    """Every user with a running or pending server, as the hub's REST API models them (every page);
    requests.RequestException when the hub does not answer."""
    users: list[dict[str, Any]] = []
    offset = 0
    while True:
        reply = requests.get(
            f"{api}/users",
            params={"state": "active", "offset": offset},
            headers={"Authorization": f"token {token}", "Accept": PAGINATED},
            timeout=HUB_TIMEOUT_S,
        )
        reply.raise_for_status()
        page = reply.json()
        users += page["items"]
        following = page["_pagination"]["next"]
        if not following:
            return users
        offset = following["offset"]


def active_servers(runtime: Runtime, token: str | None = None) -> list[dict[str, Any]] | None:
    """Every running or pending server, with "user", the user's "groups" and its user_options;
    None when the hub fails. The token is the metrics service's unless given."""
    try:
        users = active_users(hub_api_url(runtime), token or runtime.metrics["hub_token"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        log.warning("hub API did not answer: %s", exc)
        return None
    return [
        {**server, "user": user["name"], "groups": user.get("groups") or []}
        for user in users
        for server in (user.get("servers") or {}).values()
    ]
