"""Plan the metrics stack of a running facility: ports, tokens and settings for runtime.json.

The ports follow the facility's other ports (af.runtime): Prometheus, the facility exporter and
the hub's operator page take the three ports above the hub's Dask dashboard service. Tokens are
kept across `af up` runs.
"""

from __future__ import annotations

from typing import Any

from facility.model import Facility
from facility.runtime import Runtime
from facility.secrets import GENERATORS

PROMETHEUS_OFFSET = 1  # above the dashboard service's port
EXPORTER_OFFSET = 2
OPERATOR_OFFSET = 3  # the hub's operator page service (monitoring.operator_page)


def plan_metrics(fac: Facility, last_port: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """runtime.json's "metrics": empty unless facility.yaml enables metrics.

    `last_port` is the highest port the rest of the facility uses (the dashboard service);
    `previous` is the last run's "metrics" (its tokens are kept).
    """
    if not fac.metrics.enabled:
        return {}
    old = previous or {}
    settings = fac.metrics
    return {
        "enabled": True,
        "prometheus_port": last_port + PROMETHEUS_OFFSET,
        "exporter_port": last_port + EXPORTER_OFFSET,
        "operator_port": last_port + OPERATOR_OFFSET,
        # The hub service token (read:metrics, and the servers for the exporter), and the token
        # the gateways ask of whoever reads their /api/metrics (it is reachable through the proxy).
        "hub_token": old.get("hub_token") or GENERATORS["hex"](),
        "scrape_token": old.get("scrape_token") or GENERATORS["hex"](),
        "scrape_interval_seconds": settings.scrape_interval_seconds,
        "evaluation_interval_seconds": settings.evaluation_interval_seconds,
        "alert_after_seconds": settings.alert_after_seconds,
        "retention_days": settings.retention_days,
    }


def enabled(runtime: Runtime | None) -> bool:
    return bool(runtime and runtime.metrics.get("enabled"))
