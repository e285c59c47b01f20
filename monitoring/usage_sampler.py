"""The usage sampler: every usage.sample_interval_seconds, what every user holds now, added to the
usage store (facility.usage) as core-, memory- and GPU-seconds.

    AF_RUNTIME=<state>/runtime.json JUPYTERHUB_API_TOKEN=<its token> python -m monitoring.usage_sampler

The hub service `af-usage` (monitoring.hub): no page, supervised by `af up` like the idle culler,
its token may list users with their groups and servers and nothing else. It reads the sources of
the quotas' ledger (facility.ledger), counting what runs:

- notebook servers the hub says are ready (a spawn still pending, e.g. waiting in a batch queue,
  counts from when it is ready), with the size the user asked for (hub_api, as the exporter);
- every gateway's clusters with their running workers (ledger.running_clusters);
- runs of `af run` under way (facility.runs).

When the hub or a gateway does not answer, the sample records nothing and the next one counts the
time since the last recorded sample, at most facility.usage.CAP_INTERVALS intervals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import defaultdict

import facility
from facility import ledger, runs
from facility.hub_services import hub_api_url
from facility.model import IDLE_GROUP_PREFIX
from facility.quota import Holding
from facility.runtime import Runtime, read_runtime
from facility.usage import CAP_INTERVALS, UsageStore, UserHoldings, usage_path
from monitoring.hub_api import active_servers

log = logging.getLogger("af-usage")


def _shown(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The user's groups without the idle cullers' (hub_config.idle_groups), which are the facility's own."""
    return tuple(g for g in groups if not g.startswith(IDLE_GROUP_PREFIX))


async def _clusters_and_groups(
    runtime: Runtime, token: str, groups: dict[str, tuple[str, ...]], run_users: set[str]
) -> tuple[dict[str, list[Holding]], dict[str, tuple[str, ...]]]:
    """Every user's clusters (running workers), and the groups of the users with clusters or runs
    whose groups are not known yet (a cluster may outlive its owner's server; a run needs none)."""
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}
    clusters = await ledger.running_clusters(gateways)
    others = sorted((set(clusters) | run_users) - set(groups))
    answers = await asyncio.gather(*(ledger.hub_user(hub_api_url(runtime), token, user) for user in others))
    return clusters, {user: answer.groups for user, answer in zip(others, answers, strict=True)}


async def holdings_now(runtime: Runtime, token: str) -> dict[str, UserHoldings]:
    """What every user holds now; LedgerUnavailable when the hub or a gateway does not answer."""
    servers = await asyncio.to_thread(active_servers, runtime, token)
    if servers is None:
        raise ledger.LedgerUnavailable("the hub did not answer")
    held: dict[str, list[Holding]] = defaultdict(list)
    groups = {server["user"]: tuple(server["groups"]) for server in servers}
    for server in servers:
        if server.get("ready"):
            held[server["user"]].append(ledger.server_holding(server["name"], server.get("user_options") or {}))
    under_way = runs.running_all(runs.runs_dir(runtime.state_dir))
    for user, theirs in under_way.items():
        held[user] += theirs
    clusters, more_groups = await _clusters_and_groups(runtime, token, groups, set(under_way))
    for user, theirs in clusters.items():
        held[user] += theirs
    groups.update(more_groups)
    return {user: UserHoldings(_shown(groups.get(user, ())), tuple(mine)) for user, mine in held.items() if mine}


async def sample(runtime: Runtime, token: str, store: UsageStore, interval: float) -> float | None:
    """One sample recorded; the seconds it counted, None when a component did not answer."""
    try:
        holdings = await holdings_now(runtime, token)
    except ledger.LedgerUnavailable as exc:
        log.warning(
            "no sample: %s; the next one counts the time since the last, at most %g s", exc, CAP_INTERVALS * interval
        )
        return None
    seconds = store.record(holdings, time.time(), interval)
    log.info("sample: %d users hold something; %.1f s counted", len(holdings), seconds)
    return seconds


async def sample_forever(runtime: Runtime, token: str, store: UsageStore, interval: float) -> None:
    """A sample every `interval` seconds, on one event loop (a loop per sample would leave tornado's
    HTTP client of each behind)."""
    while True:
        started = time.monotonic()
        try:
            await sample(runtime, token, store, interval)
        except (sqlite3.Error, OSError):  # a full disk, say: said in the log, tried again next time
            log.exception("the sample could not be recorded")
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runtime = read_runtime()
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    interval = facility.load(runtime.facility_file).usage.sample_interval_seconds
    store = UsageStore(usage_path(runtime.state_dir))
    log.info("sampling every %d s into %s", interval, store.path)
    asyncio.run(sample_forever(runtime, token, store, interval))


if __name__ == "__main__":
    main()
