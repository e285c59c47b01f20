"""Everyone who holds something now, what they hold and their quota: the ledger (facility.ledger)
read for all users at once, for `af status` and the facility exporter.

The same sources the hub and the gateways consult for one user: the hub's active servers (its REST
API: each user's servers with their size, groups and admin flag), every gateway's clusters with
their workers running or starting (ALL_CLUSTERS_PATH, what the quota counts) and the runs of
`af run` under way (facility.runs). A user who holds only clusters or runs is asked of the hub
alone, for their groups. A component that does not answer raises LedgerUnavailable naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from facility import ledger, runs
from facility.hub_listing import active_users
from facility.model import Facility, Quota
from facility.quota import Holding, quota_for


@dataclass(frozen=True)
class Holder:
    """One user who holds something: what, and their quota (None: no ceilings, e.g. an admin)."""

    name: str
    quota: Quota | None
    held: list[Holding]


def _hub_users(hub_api: str, token: str) -> dict[str, ledger.HubUser]:
    try:
        models = active_users(hub_api, token)
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ledger.LedgerUnavailable(f"the hub did not answer ({type(exc).__name__})") from None
    return {model["name"]: _hub_user(model) for model in models}


def _hub_user(model: Mapping[str, Any]) -> ledger.HubUser:
    servers = [
        ledger.server_holding(name, server.get("user_options") or {})
        for name, server in (model.get("servers") or {}).items()
    ]
    return ledger.HubUser(tuple(model.get("groups") or ()), bool(model.get("admin")), servers)


async def holders(
    fac: Facility, hub_api: str, token: str, gateways: Mapping[str, tuple[str, str]], runs_folder: Path
) -> list[Holder]:
    """Every user holding a server, a cluster or a run, by name. `token`: the hub's, with
    list:users, read:users and read:servers; `gateways`: backend name -> (url, the gateway's hub token)."""
    hub, clusters = await asyncio.gather(
        asyncio.to_thread(_hub_users, hub_api, token), ledger.every_users_clusters(gateways)
    )
    batch = runs.running_all(runs_folder)
    others = sorted((set(clusters) | set(batch)) - set(hub))
    asked = await asyncio.gather(*(ledger.hub_user(hub_api, token, name) for name in others))
    hub.update(zip(others, asked, strict=True))
    return [
        Holder(
            name,
            quota_for(fac, hub[name].groups, hub[name].admin),
            [*hub[name].servers, *clusters.get(name, []), *batch.get(name, [])],
        )
        for name in sorted(hub)
        if hub[name].servers or clusters.get(name) or batch.get(name)
    ]
