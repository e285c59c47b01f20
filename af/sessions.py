"""What `af down` stops cleanly before it stops the processes: the users' notebook servers.

The hub keeps servers across its own restarts (cleanup_servers is off), so ending the facility
asks the hub, with `af`'s service token, to stop each one through its spawner: a local process
ends, a Slurm or HTCondor job is cancelled. Dask clusters are stopped by their gateways when
runtime.json's `stopping_file` is present at their shutdown (gateway.keep_clusters).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import requests

from facility.hub_listing import active_users
from facility.hub_services import AF_SERVICE, hub_api_url, service_token
from facility.runtime import Runtime


class HubUnreachable(RuntimeError):
    """The hub did not answer; its servers are left to the sweep of remaining processes."""


def _active_servers(api: str, token: str) -> list[tuple[str, str]]:
    return [(user["name"], name) for user in active_users(api, token, timeout=10) for name in user.get("servers", {})]


def stop_servers(runtime: Runtime, timeout: float = 60.0) -> int:
    """Ask the hub to stop every running notebook server and wait until they are gone; how many."""
    api = hub_api_url(runtime)
    token = service_token(runtime, AF_SERVICE)
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    try:
        servers = _active_servers(api, token)
        for user, name in servers:
            path = f"/users/{quote(user)}/server" + (f"s/{quote(name)}" if name else "")
            session.delete(f"{api}{path}", timeout=30)
        deadline = time.monotonic() + timeout
        while _active_servers(api, token) and time.monotonic() < deadline:
            time.sleep(0.5)
    except requests.RequestException as exc:
        raise HubUnreachable(str(exc)) from None
    return len(servers)
