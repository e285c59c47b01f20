"""The facility exporter's quota gauges: what each user holds against their quota, from the ledger
the hub and the gateways consult (facility.holders), asked at each scrape.

- af_quota_held{user, backend, resource}: cores, memory_bytes, gpus, servers, clusters, runs held
  on each backend (sum over backend for the total);
- af_quota_ceiling{user, backend, resource}: the user's ceilings, backend "all" for the overall
  ones; a user without ceilings (an admin, or no quotas) has none;
- af_quota_ledger_up: whether every component answered (0: the other two are left out).

Cardinality stays bounded: only users holding something appear, at most MAX_USERS of them (those
holding the most cores); the rest are summed under user "_others" with no ceilings.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from facility import ledger, runs
from facility.holders import Holder, holders
from facility.hub_services import hub_api_url
from facility.model import QUOTA_KEYS, Facility
from facility.quota import total
from facility.runtime import Runtime

MAX_USERS = 100
OTHERS = "_others"
GIB = 1024**3
# quota key -> (metric resource label, factor to the metric's unit)
RESOURCE_LABELS = {key: (key, 1) for key in QUOTA_KEYS} | {"memory_gb": ("memory_bytes", GIB)}


def _bounded(found: list[Holder]) -> list[Holder]:
    """At most MAX_USERS users, those holding the most cores; the others as one holder, OTHERS."""
    if len(found) <= MAX_USERS:
        return found
    ranked = sorted(found, key=lambda h: (-total(h.held, "cores"), h.name))
    rest = [holding for holder in ranked[MAX_USERS:] for holding in holder.held]
    return [*ranked[:MAX_USERS], Holder(OTHERS, None, rest)]


def quota_metrics(runtime: Runtime, fac: Facility) -> Iterator[GaugeMetricFamily]:
    """The three families above, from one read of the ledger."""
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}
    try:
        found = asyncio.run(
            holders(fac, hub_api_url(runtime), runtime.metrics["hub_token"], gateways, runs.runs_dir(runtime.state_dir))
        )
    except ledger.LedgerUnavailable:
        found = None
    answered = int(found is not None)
    yield GaugeMetricFamily("af_quota_ledger_up", "Whether the hub and every gateway said who holds what.", answered)
    if found is None:
        return
    held = GaugeMetricFamily(
        "af_quota_held", "What a user holds now, per backend.", labels=["user", "backend", "resource"]
    )
    ceiling = GaugeMetricFamily(
        "af_quota_ceiling",
        "A user's quota ceiling, per backend (backend all: over every backend).",
        labels=["user", "backend", "resource"],
    )
    for holder in _bounded(found):
        amounts: dict[tuple[str, str], float] = defaultdict(float)
        for holding in holder.held:
            for key in QUOTA_KEYS:
                amounts[holding.backend, key] += holding.amount(key)
        for (backend, key), value in sorted(amounts.items()):
            label, factor = RESOURCE_LABELS[key]
            held.add_metric([holder.name, backend, label], value * factor)
        if holder.quota is None:
            continue
        scopes = [("all", holder.quota.overall), *sorted(holder.quota.backends.items())]
        for backend, ceilings in scopes:
            for key in QUOTA_KEYS:
                if ceilings.get(key) is not None:
                    label, factor = RESOURCE_LABELS[key]
                    ceiling.add_metric([holder.name, backend, label], ceilings.get(key) * factor)
    yield held
    yield ceiling
