"""Metrics of the facility: a Prometheus that `af up` runs when facility.yaml enables `metrics`.

plan.py           ports, tokens and settings of the metrics stack (runtime.json "metrics")
prometheus.py     Prometheus's configuration and token files, and its command line
rules.py          recording and alerting rules (hub not answering, spawns failing, cache down)
exporter.py       the facility exporter (servers per backend, pending spawns, XCache up/down)
xcache.py         bytes from cache vs origin: the XCaches' g-stream, received by the exporter
gateway.py        /api/metrics and /api/af/holdings on every dask-gateway, added to its backend
routes.py         the paths gateway.py adds
hub.py            the hub services: `prometheus` (token for /hub/metrics), `af-operator` and
                  `af-usage` (processes af supervises)
hub_api.py        active notebook servers from the hub's REST API (every page)
usage_sampler.py  the hub service `af-usage`: what everyone holds, into the usage record
                  (facility.usage), every usage.sample_interval_seconds, metrics enabled or not
status.py         `af status`'s table of who holds which servers and clusters
operator_page.py  the hub service `af-operator`: plots of the dashboards' queries, for admins
panels.py         the dashboards' queries; grafana.py renders them for Grafana
components.py     the supervised processes `af up` adds
grafana/          dashboard JSON for sites that run Grafana
chart_files.py    the rules, dashboard and defaults the Helm chart holds (helm/.../files/metrics/)
"""

from __future__ import annotations

from facility.runtime import Runtime


def prepare(runtime: Runtime, facility_name: str) -> None:
    """What `af up` writes before starting a facility with metrics (after af.xrootd's files)."""
    from monitoring import prometheus, xcache

    prometheus.write_configs(runtime, facility_name)
    xcache.add_gstream_directives(runtime)
