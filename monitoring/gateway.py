"""Metrics of a dask-gateway: dask-gateway-server 2026.3 exposes none, so the facility adds them.

`with_metrics(backend_class)` puts `GatewayMetricsMixin` in front of the gateway's backend class
(the way gateway.dashboard_guard adds dashboard keys). When the gateway starts, the mixin
adds two routes to the gateway's own aiohttp application (dask-gateway's documented hook:
`Backend.setup(app)` "can be used to add additional routes"), both answering only a request that
carries the facility's scrape token, since the gateway's API is reachable through the hub's proxy:

- GET /api/metrics: clusters by status, workers by status, worker cores and memory, users with
  clusters (Prometheus text format, prometheus-client);
- GET /api/af/holdings: per user, the clusters, workers, cores and memory they hold (JSON), which
  `af status` shows.

Both read the backend's own view of its clusters (held_clusters(): the state dask-gateway
reconciles, backends.common.held_clusters), so they agree with what the gateway itself acts on.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from backends.common.mixed_in import mixed_in
from monitoring.routes import HOLDINGS_PATH, METRICS_PATH


def holdings(backend: Any) -> dict[str, dict[str, float]]:
    """Per user: clusters, workers (pending or running), and the cores and memory of those workers."""
    result: dict[str, dict[str, float]] = defaultdict(
        lambda: {"clusters": 0, "workers": 0, "cores": 0.0, "memory_bytes": 0.0}
    )
    for cluster in backend.held_clusters():
        mine = result[cluster.username]
        workers = sum(cluster.workers.values())
        mine["clusters"] += 1
        mine["workers"] += workers
        mine["cores"] += cluster.worker_cores * workers
        mine["memory_bytes"] += cluster.worker_memory * workers
    return dict(result)


class GatewayCollector(Collector):
    def __init__(self, backend: Any):
        self.backend = backend

    def collect(self) -> Any:
        clusters = self.backend.held_clusters()
        by_status: dict[str, int] = dict.fromkeys(("pending", "running", "stopping"), 0)
        workers: dict[str, int] = dict.fromkeys(("pending", "running", "stopping"), 0)
        cores = memory = 0.0
        for cluster in clusters:
            by_status[cluster.status] = by_status.get(cluster.status, 0) + 1
            for state, count in cluster.workers.items():
                workers[state] = workers.get(state, 0) + count
            cores += cluster.worker_cores * cluster.running
            memory += cluster.worker_memory * cluster.running
        family = GaugeMetricFamily("af_gateway_clusters", "Dask clusters by status.", labels=["status"])
        for status, value in sorted(by_status.items()):
            family.add_metric([status], value)
        yield family
        family = GaugeMetricFamily("af_gateway_workers", "Dask workers by status.", labels=["status"])
        for status, value in sorted(workers.items()):
            family.add_metric([status], value)
        yield family
        yield GaugeMetricFamily("af_gateway_worker_cores", "Cores of the running Dask workers.", cores)
        yield GaugeMetricFamily("af_gateway_worker_memory_bytes", "Memory of the running Dask workers.", memory)
        yield GaugeMetricFamily(
            "af_gateway_users", "Users holding at least one cluster.", len({c.username for c in clusters})
        )


class GatewayMetricsMixin(LoggingConfigurable):
    """Adds /api/metrics and /api/af/holdings to the gateway; see the module's documentation."""

    metrics_token = Unicode("", config=True, help="Bearer token a reader must send; empty leaves the routes out.")

    async def setup(self, app: web.Application) -> None:
        await super().setup(app)
        if not self.metrics_token:
            return
        registry = CollectorRegistry()
        registry.register(GatewayCollector(self))
        app.router.add_get(METRICS_PATH, self._guarded(lambda: _metrics_response(registry)))
        app.router.add_get(HOLDINGS_PATH, self._guarded(lambda: web.json_response(holdings(self))))

    def _guarded(self, respond: Any) -> Any:
        expected = f"Bearer {self.metrics_token}".encode()

        async def handler(request: web.Request) -> web.Response:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response({"error": "a valid scrape token is needed"}, status=403)
            return respond()

        return handler


def _metrics_response(registry: CollectorRegistry) -> web.Response:
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def with_metrics(backend_class: str | type) -> type:
    """`backend_class` with GatewayMetricsMixin in front, under the same name (its config still applies)."""
    return mixed_in(GatewayMetricsMixin, backend_class)
