"""The gateway refuses a cluster or a scale-up that would take its user past their quota (facility.quota).

`with_quota(backend_class)` puts QuotaMixin in front of whichever backend class the kind chose.
It uses dask-gateway-server's own hooks: `start_cluster` (a PublicException becomes the 422 the
client shows), `forward_message_to_scheduler` (the scale route's 409) and `on_cluster_heartbeat`,
where the scheduler asks for its worker count: adaptive scaling is capped there, as dask-gateway
caps `cluster_max_workers`. What the user holds is read each time (facility.ledger): their
servers and groups from the hub's API, their clusters on the other gateways from those,
their clusters here from this gateway's own view of them (held_clusters(), given by each backend
kind's mixin: backends.common.held_clusters), their runs of `af run` from facility.runs.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.base import PublicException
from traitlets import Dict, Unicode
from traitlets.config import LoggingConfigurable

import facility
from backends.common.held_clusters import HeldCluster
from backends.common.mixed_in import mixed_in
from facility import ledger, runs
from facility.model import Facility, Quota
from facility.quota import CLUSTER, Holding, cluster_holding, per_worker, quota_for, refusal, scale_refusal, without
from facility.quota import workers_that_fit as fitting_workers

GIB = 2**30


@lru_cache(maxsize=2)
def _parsed(text: str) -> Facility:
    return facility.loads(text, source="the gateway's facility_text")


def cluster_entry(cluster: HeldCluster) -> dict[str, Any]:
    """This cluster in the answer of USER_CLUSTERS_PATH (facility.ledger reads it)."""
    return ledger.cluster_entry(
        cluster.held,
        cluster.worker_cores,
        cluster.worker_memory,
        cluster.worker_gpus,
        running=cluster.running,
        title=cluster.title,
    )


def holding_of(backend: str, cluster: HeldCluster) -> Holding:
    return cluster_holding(
        backend,
        cluster.name,
        cluster.held,
        cluster.worker_cores,
        cluster.worker_memory / GIB,
        cluster.worker_gpus,
        cluster.title,
    )


def per_worker_of(cluster: HeldCluster) -> Holding:
    return per_worker(cluster.worker_cores, cluster.worker_memory / GIB, cluster.worker_gpus)


class QuotaMixin(LoggingConfigurable):
    quota_backend = Unicode("", config=True, help="The facility.yaml name of this gateway's backend.")
    facility_file = Unicode("", config=True, help="facility.yaml, read again when it changes (its quotas).")
    facility_text = Unicode(
        "", config=True, help="facility.yaml's text, for a gateway without its file (the chart's: a ConfigMap value)."
    )
    hub_api_url = Unicode("", config=True, help="The hub's REST API: a user's groups and servers.")
    ledger_token = Unicode("", config=True, help="This gateway's hub token (read:users, read:servers).")
    peer_gateways = Dict(config=True, help="Other backends' gateways: name -> [url, their hub token].")
    runs_folder = Unicode("", config=True, help="The facility's folder of runs of `af run` under way (facility.runs).")
    _starting: dict[str, asyncio.Lock]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._starting = {}

    def _quota_facility(self) -> Facility:
        if self.facility_text:
            return _parsed(self.facility_text)
        return facility.current(self.facility_file or None)

    async def _quota_and_holdings(self, username: str) -> tuple[Quota | None, list[Holding]]:
        fac = self._quota_facility()
        if not fac.quotas.any:
            return None, []
        hub = await ledger.hub_user(self.hub_api_url, self.ledger_token, username)
        quota = quota_for(fac, hub.groups, hub.admin)
        if quota is None:
            return None, []
        peers = {name: (url, token) for name, (url, token) in self.peer_gateways.items()}
        elsewhere = await ledger.gateway_clusters(peers, username)
        here = [holding_of(self.quota_backend, c) for c in self.held_clusters() if c.username == username]
        batch = runs.running(Path(self.runs_folder), username) if self.runs_folder else []
        return quota, hub.servers + elsewhere + here + batch

    async def _ledger(self, username: str) -> tuple[Quota | None, list[Holding]]:
        try:
            return await self._quota_and_holdings(username)
        except ledger.LedgerUnavailable as exc:
            raise PublicException(f"Cannot check your quota right now: {exc}. Try again in a minute.") from None

    async def start_cluster(self, user: Any, cluster_options: Any) -> str:
        # One check at a time per user: the cluster enters the database before the next check reads it.
        async with self._starting.setdefault(user.name, asyncio.Lock()):
            quota, held = await self._ledger(user.name)
            asked = Holding(CLUSTER, self.quota_backend, "(new)")
            message = refusal(quota, held, asked, f"Starting a Dask cluster on {self.quota_backend!r}")
            if message:
                self.log.info("Quota: refused a cluster of %s: %s", user.name, message)
                raise PublicException(message)
            return await super().start_cluster(user, cluster_options)

    async def forward_message_to_scheduler(self, cluster: Any, msg: dict[str, Any]) -> None:
        record = self.held_cluster(cluster.name) if msg.get("op") == "scale" else None
        if record is not None and int(msg["count"]) > record.held:
            quota, held = await self._ledger(record.username)
            this = holding_of(self.quota_backend, record)
            others = without(held, CLUSTER, record.name)
            message = scale_refusal(quota, others, this, int(msg["count"]), per_worker_of(record))
            if message:
                self.log.info("Quota: refused a scale-up of %s: %s", record.username, message)
                raise PublicException(message)
        await super().forward_message_to_scheduler(cluster, msg)

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict[str, Any]) -> None:
        record = self.held_cluster(cluster_name)
        if record is not None and int(msg.get("count", 0)) > record.target:
            allowed = await self._workers_allowed(record, int(msg["count"]))
            if allowed < msg["count"]:
                self.log.info(
                    "Quota: cluster %s of %s asked for %d workers; %d fit its owner's quota",
                    cluster_name,
                    record.username,
                    msg["count"],
                    allowed,
                )
                msg = {**msg, "count": allowed}
        await super().on_cluster_heartbeat(cluster_name, msg)

    async def _workers_allowed(self, record: HeldCluster, wanted: int) -> int:
        """Workers the cluster may grow to (adaptive scaling asks here); never fewer than it has."""
        current = record.target
        try:
            quota, held = await self._quota_and_holdings(record.username)
        except ledger.LedgerUnavailable as exc:
            self.log.warning("Quota: cluster %s stays at %d workers: %s", record.name, current, exc)
            return current
        others = without(held, CLUSTER, record.name)
        fits = fitting_workers(quota, others, self.quota_backend, per_worker_of(record))
        return wanted if fits is None else max(current, min(wanted, fits))


def with_quota(backend_class: str | type) -> type:
    """`backend_class` with QuotaMixin in front, under the same name (its config still applies)."""
    return mixed_in(QuotaMixin, backend_class)
