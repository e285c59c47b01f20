"""`af status`'s second table: who holds what right now, notebook servers and Dask clusters.

Read from the running components, not from a record of our own: the hub's REST API (servers with
their backend and size) and every gateway's /api/af/holdings (clusters, workers, their cores and
memory; monitoring.gateway). Both need the tokens of the metrics stack, so the table is shown
when facility.yaml enables metrics. With quotas, a column says what each user holds against
theirs, read through the same ledger the hub and the gateways consult (facility.ledger).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import requests
from rich.table import Table

import facility
from facility import ledger, runs
from facility.hub_services import hub_api_url
from facility.quota import quota_for, use_text
from facility.runtime import Runtime
from monitoring.hub_api import active_servers
from monitoring.plan import enabled
from monitoring.routes import HOLDINGS_PATH

GIB = 1024**3


def gateway_holdings(runtime: Runtime) -> dict[str, dict[str, dict[str, float]] | None]:
    """backend -> user -> holdings; None for a gateway that did not answer."""
    result: dict[str, dict[str, dict[str, float]] | None] = {}
    headers = {"Authorization": f"Bearer {runtime.metrics['scrape_token']}"}
    for name, gw in runtime.gateways.items():
        try:
            reply = requests.get(f"http://127.0.0.1:{gw.api_port}{HOLDINGS_PATH}", headers=headers, timeout=5)
            reply.raise_for_status()
            result[name] = reply.json()
        except requests.RequestException:
            result[name] = None
    return result


def quota_uses(runtime: Runtime, users: list[str]) -> dict[str, str]:
    """user -> what they hold against their quota, from the ledger the hub and the gateways consult;
    empty when facility.yaml sets no quotas."""
    fac = facility.load(runtime.facility_file)
    if not fac.quotas.any:
        return {}
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}

    async def use_of(user: str) -> str:
        try:
            hub = await ledger.hub_user(hub_api_url(runtime), runtime.metrics["hub_token"], user)
            held = hub.servers + await ledger.gateway_clusters(gateways, user)
            held += runs.running(runs.runs_dir(runtime.state_dir), user)
        except ledger.LedgerUnavailable as exc:
            return f"unknown: {exc}"
        return use_text(quota_for(fac, hub.groups, hub.admin), held)

    async def all_uses() -> list[str]:
        return list(await asyncio.gather(*(use_of(user) for user in users)))

    return dict(zip(users, asyncio.run(all_uses()), strict=True))


def _server_text(server: dict[str, Any]) -> str:
    options = server.get("user_options") or {}
    size = f"{options.get('cores', '?')} cores, {options.get('memory_gb', '?')} GB"
    if options.get("gpus"):
        size += f", {options['gpus']} GPU {options.get('gpu_type') or ''}".rstrip()
    state = "pending" if server.get("pending") else "running"
    return f"{options.get('backend', '?')}: {size} ({state})"


def users_table(runtime: Runtime) -> Table | str | None:
    """The users table; a sentence when it cannot be made; None when metrics are not enabled."""
    if not enabled(runtime):
        return None
    servers = active_servers(runtime)
    if servers is None:
        return "Users: the hub's API did not answer."
    holdings = gateway_holdings(runtime)
    rows: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"servers": [], "clusters": []})
    for server in servers:
        rows[server["user"]]["servers"].append(_server_text(server))
    for backend, users in holdings.items():
        for user, held in (users or {}).items():
            rows[user]["clusters"].append(
                f"{backend}: {held['clusters']:.0f} clusters, {held['workers']:.0f} workers, "
                f"{held['cores']:g} cores, {held['memory_bytes'] / GIB:g} GB"
            )
    silent = [name for name, users in holdings.items() if users is None]
    title = "Users holding servers or Dask clusters"
    if silent:
        title += f" (gateway {', '.join(silent)} did not answer)"
    table = Table(title=title)
    uses = quota_uses(runtime, sorted(rows))
    for column in ("user", "notebook servers", "Dask clusters", *(["quota use"] if uses else [])):
        table.add_column(column, overflow="fold")
    for user in sorted(rows):
        quota = [uses[user]] if uses else []
        table.add_row(user, "\n".join(rows[user]["servers"]) or "-", "\n".join(rows[user]["clusters"]) or "-", *quota)
    if not rows:
        return "Users: nobody holds a notebook server or a Dask cluster."
    return table
