"""Who has a notebook server, as the hub's REST API lists them, every page of it: for `af down`,
the metrics exporter and the usage sampler."""

from __future__ import annotations

from typing import Any

import requests

# JupyterHub's paginated answer ({"items", "_pagination"}); without it a listing stops at 200 users.
PAGINATED = "application/jupyterhub-pagination+json"
HUB_TIMEOUT_S = 5


def active_users(api: str, token: str, timeout: float = HUB_TIMEOUT_S) -> list[dict[str, Any]]:
    """Every user with a running or pending server, as the hub's REST API models them (every page);
    requests.RequestException when the hub does not answer."""
    users: list[dict[str, Any]] = []
    offset = 0
    while True:
        reply = requests.get(
            f"{api}/users",
            params={"state": "active", "offset": offset},
            headers={"Authorization": f"token {token}", "Accept": PAGINATED},
            timeout=timeout,
        )
        reply.raise_for_status()
        page = reply.json()
        users += page["items"]
        following = page["_pagination"]["next"]
        if not following:
            return users
        offset = following["offset"]
