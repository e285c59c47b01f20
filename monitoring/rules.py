"""Prometheus recording and alerting rules of the facility, as one rules file Prometheus loads.

Recording rules give the dashboards (Grafana, the hub's operator page) short names for the sums
they plot. Alerts cover what operators of comparable facilities page on: the hub not answering,
spawns failing, a gateway down, the data cache down. How long a condition must hold before its
alert fires (`for:`) comes from facility.yaml's metrics.alert_after_seconds.
"""

from __future__ import annotations

from typing import Any

# Job names of prometheus.py's scrape configuration.
HUB_JOB = "hub"
GATEWAY_JOB = "gateway"
FACILITY_JOB = "facility"

SPAWNS = f'jupyterhub_server_spawn_duration_seconds_count{{job="{HUB_JOB}"}}'
FAILED_SPAWNS = f'jupyterhub_server_spawn_duration_seconds_count{{job="{HUB_JOB}",status!="success"}}'

RECORDING_RULES: list[dict[str, str]] = [
    {"record": "af:servers:by_backend", "expr": "sum by (backend, state) (af_servers)"},
    {"record": "af:clusters:by_backend", "expr": "sum by (backend, status) (af_gateway_clusters)"},
    {"record": "af:workers:by_backend", "expr": "sum by (backend, status) (af_gateway_workers)"},
    {
        "record": "af:spawn_failures:increase10m",
        "expr": f"sum(increase({FAILED_SPAWNS}[10m]))",
    },
    {
        "record": "af:spawns:increase10m",
        "expr": f"sum(increase({SPAWNS}[10m]))",
    },
]


def _alert(name: str, expr: str, after: int, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": f"{after}s",
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def alerting_rules(after_seconds: int) -> list[dict[str, Any]]:
    """The facility's alerts; each fires once its condition held for `after_seconds`."""
    return [
        _alert(
            "HubNotAnswering",
            f'up{{job="{HUB_JOB}"}} == 0',
            after_seconds,
            "critical",
            "JupyterHub does not answer on /hub/metrics: nobody can log in or start a server.",
        ),
        _alert(
            "SpawnsFailing",
            f"increase({FAILED_SPAWNS}[10m]) > 0",
            after_seconds,
            "warning",
            "Notebook servers failed to start in the last 10 minutes ({{ $labels.status }}: {{ $labels.reason }}).",
        ),
        _alert(
            "GatewayDown",
            f'up{{job="{GATEWAY_JOB}"}} == 0',
            after_seconds,
            "critical",
            "The dask-gateway of backend {{ $labels.backend }} does not answer: no Dask clusters there.",
        ),
        _alert(
            "CacheDown",
            "af_xcache_up == 0",
            after_seconds,
            "critical",
            "XCache {{ $labels.cache }} does not answer: reads fall back to the origin, slower.",
        ),
        _alert(
            "OriginDown",
            "af_xrootd_origin_up == 0",
            after_seconds,
            "critical",
            "The data lake's XRootD origin does not answer: data cannot be read.",
        ),
        _alert(
            "FacilityExporterDown",
            f'up{{job="{FACILITY_JOB}"}} == 0',
            after_seconds,
            "warning",
            "The facility exporter does not answer: server, cache and spawn metrics are missing.",
        ),
    ]


def rules_document(after_seconds: int) -> dict[str, Any]:
    """The rules file's content (Prometheus's rule-file format)."""
    return {
        "groups": [
            {"name": "af-recording", "rules": RECORDING_RULES},
            {"name": "af-alerts", "rules": alerting_rules(after_seconds)},
        ]
    }
