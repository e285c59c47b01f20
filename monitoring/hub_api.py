"""What the hub's REST API says about active notebook servers: for the exporter (the metrics
service's token) and the usage sampler (its own token)."""

from __future__ import annotations

import logging
from typing import Any

import requests

from facility.hub_listing import active_users
from facility.hub_services import hub_api_url
from facility.runtime import Runtime

log = logging.getLogger(__name__)


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
