"""Metrics of the facility: a Prometheus that `af up` runs when facility.yaml enables `metrics`.

plan.py           ports, tokens and settings of the metrics stack (runtime.json "metrics")
prometheus.py     Prometheus's configuration and token files, and its command line
rules.py          recording and alerting rules (hub not answering, spawns failing, cache down)
exporter.py       the facility exporter (servers per backend, pending spawns, XCache up/down)
gateway.py        /api/metrics on every dask-gateway (clusters and workers), added to its backend
hub.py            the hub service whose token may read /hub/metrics and the servers
components.py     the supervised processes `af up` adds
grafana/          dashboard JSON for sites that run Grafana
"""

from __future__ import annotations

from typing import Any


def prepare(runtime: dict[str, Any], facility_name: str) -> None:
    """What `af up` writes before starting a facility with metrics (after af.xrootd's files)."""
    from monitoring import prometheus, xcache

    prometheus.write_configs(runtime, facility_name)
    xcache.add_gstream_directives(runtime)
