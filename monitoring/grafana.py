"""Grafana dashboard JSON of the facility, from monitoring.panels, for sites that run Grafana.

    .venv/bin/python -m monitoring.grafana     # rewrites monitoring/grafana/facility.json

Import the file in Grafana (Dashboards > Import) and pick the Prometheus data source that scrapes
the facility; a test checks the file is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitoring.panels import PANELS, Panel

DASHBOARD_FILE = Path(__file__).resolve().parent / "grafana" / "facility.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
COLUMNS = 2  # panels per row
WIDTH, HEIGHT = 12, 8  # Grafana's grid is 24 units wide


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"x": (index % COLUMNS) * WIDTH, "y": (index // COLUMNS) * HEIGHT, "w": WIDTH, "h": HEIGHT},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "expr": panel.expr, "legendFormat": panel.legend}],
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "analysis-facility",
        "title": "Analysis facility",
        "tags": ["analysis-facility", "jupyterhub", "dask-gateway", "xcache"],
        "timezone": "utc",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": [_panel(i, p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    DASHBOARD_FILE.write_text(render())
    print(f"wrote {DASHBOARD_FILE}")
