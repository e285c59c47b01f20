"""The plots of the facility's dashboards, one list for every place that shows them.

monitoring/grafana.py renders them as Grafana dashboard JSON (monitoring/grafana/facility.json);
tests/test_metrics.py asks the real Prometheus each query, so a renamed metric breaks a test rather
than a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    legend: str  # Grafana legend template, e.g. "{{backend}} {{state}}"
    unit: str = "short"  # Grafana unit id


PANELS: tuple[Panel, ...] = (
    Panel("Notebook servers", "af:servers:by_backend", "{{backend}} {{state}}"),
    Panel("Oldest pending spawn", "af_pending_spawn_oldest_seconds", "{{backend}}", "s"),
    Panel("Dask clusters", "af:clusters:by_backend", "{{backend}} {{status}}"),
    Panel("Dask workers", "af:workers:by_backend", "{{backend}} {{status}}"),
    Panel("Dask worker cores", "sum by (backend) (af_gateway_worker_cores)", "{{backend}}"),
    Panel("Dask worker memory", "sum by (backend) (af_gateway_worker_memory_bytes)", "{{backend}}", "bytes"),
    Panel(
        "Requested by notebook servers",
        'sum by (backend, resource) (af_server_requested{resource!="memory_bytes"})',
        "{{backend}} {{resource}}",
    ),
    Panel("Spawns (10 min)", "af:spawns:increase10m", "all spawns"),
    Panel("Failed spawns (10 min)", "af:spawn_failures:increase10m", "failed"),
    Panel(
        "Spawn time (90th percentile)",
        "histogram_quantile(0.9, sum by (le) "
        '(rate(jupyterhub_server_spawn_duration_seconds_bucket{status="success"}[30m])))',
        "p90",
        "s",
    ),
    Panel("Running servers (hub)", "jupyterhub_running_servers", "running"),
    Panel("XCache up", "af_xcache_up", "{{cache}}"),
    Panel(
        "XCache bytes served", "sum by (cache, source) (rate(af_xcache_bytes_total[5m]))", "{{cache}} {{source}}", "Bps"
    ),
    Panel(
        "XCache hit ratio",
        'sum by (cache) (rate(af_xcache_bytes_total{source="cache"}[30m]))'
        " / sum by (cache) (rate(af_xcache_bytes_total[30m]))",
        "{{cache}}",
        "percentunit",
    ),
    Panel("Origin up", "af_xrootd_origin_up", "{{url}}"),
    Panel("Targets up", "up", "{{job}} {{backend}}"),
    Panel("Firing alerts", 'count by (alertname) (ALERTS{alertstate="firing"})', "{{alertname}}"),
)
