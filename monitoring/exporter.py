"""The facility exporter: what neither the hub's nor the gateways' metrics say, for Prometheus.

    AF_RUNTIME=<state>/runtime.json python -m monitoring.exporter

Each scrape asks the real components, so the numbers are never older than the scrape:

- the hub's REST API (token of the hub service `prometheus`): notebook servers per backend,
  running or pending, the cores / memory / GPUs they asked for, and how long the oldest pending
  spawn has waited;
- every XRootD server of data.caches and the origin: answers a ping or not (XRootD's own client,
  pinging in the background so a dead server never slows a scrape).

- the ledger of the quotas (monitoring.quota_metrics): what each user holds against their quota;
- the g-stream of every XCache the facility runs (monitoring.xcache): bytes served from the cache,
  fetched from the origin and bypassed, counted as files are closed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

import facility
from facility.runtime import Runtime, read_runtime
from monitoring.hub_api import active_servers
from monitoring.quota_metrics import quota_metrics
from monitoring.xcache import GStreamCounters, gstream_ports

XROOTD_PING_TIMEOUT_S = 3
GIB = 1024**3
# The XRootD client retries a refused connection for a while (10 s and more here), whatever the
# ping's timeout, and then remembers the server as broken for 30 min (XRD_STREAMERRORWINDOW): a
# cache that came back stayed "down". One short try, nothing remembered: each probe sees now.
XROOTD_CLIENT_ENV = {
    "XRD_CONNECTIONRETRY": "1",
    "XRD_CONNECTIONWINDOW": "2",
    "XRD_REQUESTTIMEOUT": "3",
    "XRD_STREAMERRORWINDOW": "0",
}

log = logging.getLogger("af-exporter")


def _xrootd_answers(url: str) -> bool:
    from XRootD import client  # the XRootD client (PyPI xrootd), the same one notebooks read with

    status, _ = client.FileSystem(url).ping(timeout=XROOTD_PING_TIMEOUT_S)
    return bool(status.ok)


class Prober:
    """Pings each XRootD server in its own thread, so a scrape never waits on a dead server.

    A server counts as up when its last ping answered and no ping has been hanging for longer
    than `stuck_after` seconds.
    """

    def __init__(self, urls: list[str], every: float, stuck_after: float):
        self.every = every
        self.stuck_after = stuck_after
        self._lock = threading.Lock()
        self._state: dict[str, tuple[bool, float | None]] = dict.fromkeys(urls, (False, None))
        for url in urls:
            threading.Thread(target=self._loop, args=(url,), name=f"probe {url}", daemon=True).start()

    def _loop(self, url: str) -> None:
        while True:
            with self._lock:
                self._state[url] = (self._state[url][0], time.monotonic())
            try:
                up = _xrootd_answers(url)
            except Exception:  # a broken client must not end the probing; count it as down
                log.exception("probing %s failed", url)
                up = False
            with self._lock:
                self._state[url] = (up, None)
            time.sleep(self.every)

    def up(self, url: str) -> bool:
        with self._lock:
            last, pending_since = self._state[url]
        return last and (pending_since is None or time.monotonic() - pending_since < self.stuck_after)


def _age_seconds(started: str | None, now: dt.datetime) -> float:
    if not started:
        return 0.0
    return max(0.0, (now - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds())


class FacilityCollector(Collector):
    """Collects the facility's metrics from the hub's API and the data lake at each scrape."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        # Every backend appears in the series, with 0 when it has no servers, so plots show it.
        self.facility = facility.load(runtime.facility_file)
        self.backends = [b.name for b in self.facility.backends]
        data = runtime.data
        urls = [data["origin"]["url"], *(c["url"] for c in data.get("caches", {}).values())] if data else []
        every = runtime.metrics["scrape_interval_seconds"]
        self.prober = Prober(urls, every=every, stuck_after=XROOTD_PING_TIMEOUT_S + 2)
        self.gstream = GStreamCounters(gstream_ports(runtime))

    def _server_metrics(self) -> Iterator[GaugeMetricFamily]:
        servers = active_servers(self.runtime)
        yield GaugeMetricFamily(
            "af_hub_api_up", "Whether the hub's REST API answered the exporter.", 1 if servers is not None else 0
        )
        if servers is None:
            return
        now = dt.datetime.now(dt.UTC)
        count: dict[tuple[str, str], int] = defaultdict(int)
        asked: dict[tuple[str, str], float] = defaultdict(float)
        oldest_pending: dict[str, float] = defaultdict(float)
        for name in self.backends:
            for state in ("running", "pending"):
                count[name, state] = 0
        for server in servers:
            options = server.get("user_options") or {}
            backend = str(options.get("backend") or "unknown")
            pending = bool(server.get("pending"))
            count[backend, "pending" if pending else "running"] += 1
            if pending:
                oldest_pending[backend] = max(oldest_pending[backend], _age_seconds(server.get("started"), now))
            for key, factor in (("cores", 1), ("memory_gb", GIB), ("gpus", 1)):
                asked[backend, key] += float(options.get(key) or 0) * factor
        family = GaugeMetricFamily("af_servers", "Notebook servers per backend and state.", labels=["backend", "state"])
        for (backend, state), value in sorted(count.items()):
            family.add_metric([backend, state], value)
        yield family
        family = GaugeMetricFamily(
            "af_server_requested",
            "What active notebook servers asked for, per backend.",
            labels=["backend", "resource"],
        )
        names = {"cores": "cores", "memory_gb": "memory_bytes", "gpus": "gpus"}
        for (backend, key), value in sorted(asked.items()):
            family.add_metric([backend, names[key]], value)
        yield family
        family = GaugeMetricFamily(
            "af_pending_spawns", "Notebook servers still starting, per backend.", labels=["backend"]
        )
        wait = GaugeMetricFamily(
            "af_pending_spawn_oldest_seconds", "How long the oldest pending spawn has waited.", labels=["backend"]
        )
        for backend in sorted({b for b, _ in count}):
            family.add_metric([backend], count[backend, "pending"])
            wait.add_metric([backend], oldest_pending.get(backend, 0.0))
        yield family
        yield wait

    def _data_metrics(self) -> Iterator[GaugeMetricFamily]:
        data = self.runtime.data
        if not data:
            return
        origin = GaugeMetricFamily(
            "af_xrootd_origin_up", "Whether the data lake's origin answers a ping.", labels=["url"]
        )
        origin.add_metric([data["origin"]["url"]], 1 if self.prober.up(data["origin"]["url"]) else 0)
        yield origin
        caches = GaugeMetricFamily(
            "af_xcache_up", "Whether an XCache answers a ping.", labels=["cache", "url", "managed"]
        )
        for name, cache in sorted(data.get("caches", {}).items()):
            up = self.prober.up(cache["url"])
            caches.add_metric([name, cache["url"], str(bool(cache.get("managed"))).lower()], 1 if up else 0)
        yield caches
        served, files = self.gstream.snapshot()
        family = CounterMetricFamily(
            "af_xcache_bytes",
            "Bytes an XCache served from its disk (cache), fetched from the origin, or bypassed, per closed file.",
            labels=["cache", "source"],
        )
        for (cache, source), value in sorted(served.items()):
            family.add_metric([cache, source], value)
        yield family
        family = CounterMetricFamily("af_xcache_files_closed", "Files closed by XCache clients.", labels=["cache"])
        for cache, value in sorted(files.items()):
            family.add_metric([cache], value)
        yield family

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.monotonic()
        yield from self._server_metrics()
        yield from self._data_metrics()
        if self.facility.quotas.any:
            yield from quota_metrics(self.runtime, self.facility)
        yield GaugeMetricFamily(
            "af_exporter_scrape_seconds", "How long the exporter took to collect.", time.monotonic() - started
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name, value in XROOTD_CLIENT_ENV.items():
        os.environ.setdefault(name, value)  # read when the XRootD client loads, in the first probe
    runtime = read_runtime()
    registry = CollectorRegistry()
    registry.register(FacilityCollector(runtime))
    port = runtime.metrics["exporter_port"]
    # Loopback on a host (`af up`); in Kubernetes (helm/) a sidecar of the hub's pod that the site's
    # Prometheus scrapes from another pod, so the chart's runtime.json says 0.0.0.0.
    address = runtime.metrics.get("exporter_address", "127.0.0.1")
    start_http_server(port, addr=address, registry=registry)
    log.info("facility exporter listening on %s:%d", address, port)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
