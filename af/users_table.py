"""`af status`'s second table: who holds what right now, with or without metrics.

Read through the ledger the hub and the gateways consult (facility.holders): each user's notebook
servers, Dask clusters with their workers and size, runs of `af run`, and, when facility.yaml sets
quotas, what they hold against theirs. The hub is asked with `af`'s own service token.
"""

from __future__ import annotations

import asyncio

from rich.table import Table

import facility
from facility import ledger, runs
from facility.holders import Holder, holders
from facility.hub_services import AF_SERVICE, hub_api_url, service_token
from facility.quota import CLUSTER, RUN, SERVER, Holding, use_text
from facility.runtime import Runtime


def _size(h: Holding) -> str:
    size = f"{h.cores:g} cores, {h.memory_gb:g} GB" + (f", {h.gpus:g} GPUs" if h.gpus else "")
    if h.kind == CLUSTER:
        return f"{h.backend}: {h.name}, {h.workers} workers ({size})"
    name = "" if h.name in ("", "default") else f"{h.name}, "
    return f"{h.backend}: {name}{size}"


def _column(holder: Holder, kind: str) -> str:
    return "\n".join(_size(h) for h in holder.held if h.kind == kind) or "-"


def everyone(runtime: Runtime) -> list[Holder]:
    """Every user holding something now; ledger.LedgerUnavailable when a component does not answer."""
    fac = facility.load(runtime.facility_file)
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}
    token = service_token(runtime, AF_SERVICE)
    return asyncio.run(holders(fac, hub_api_url(runtime), token, gateways, runs.runs_dir(runtime.state_dir)))


def users_table(runtime: Runtime) -> Table | str:
    """The users table, or a sentence saying why there is none."""
    try:
        found = everyone(runtime)
    except ledger.LedgerUnavailable as exc:
        return f"Users: cannot say who holds what: {exc}."
    if not found:
        return "Users: nobody holds a notebook server, a Dask cluster or a run of `af run`."
    quotas = facility.load(runtime.facility_file).quotas.any
    table = Table(title="Users holding servers, Dask clusters or runs")
    columns = ["user", "notebook servers", "Dask clusters", "af runs", *(["quota use"] if quotas else [])]
    for column in columns:
        table.add_column(column, overflow="fold")
    for holder in found:
        use = [use_text(holder.quota, holder.held)] if quotas else []
        table.add_row(holder.name, *(_column(holder, kind) for kind in (SERVER, CLUSTER, RUN)), *use)
    return table
