"""What the hub's REST API says about active notebook servers, read with the metrics service's token."""

from __future__ import annotations

import logging
from typing import Any

import requests

from facility.runtime import Runtime

HUB_TIMEOUT_S = 5

log = logging.getLogger(__name__)


def active_servers(runtime: Runtime) -> list[dict[str, Any]] | None:
    """Every running or pending server, with "user" and its user_options; None when the hub fails."""
    hub_api = f"http://127.0.0.1:{runtime.ports.hub_api}/hub/api"
    try:
        reply = requests.get(
            f"{hub_api}/users",
            params={"state": "active"},
            headers={"Authorization": f"token {runtime.metrics['hub_token']}"},
            timeout=HUB_TIMEOUT_S,
        )
        reply.raise_for_status()
    except requests.RequestException as exc:
        log.warning("hub API did not answer: %s", exc)
        return None
    return [
        {**server, "user": user["name"]} for user in reply.json() for server in (user.get("servers") or {}).values()
    ]
