"""The hub's side of the metrics: a service `prometheus` whose token reads /hub/metrics and the servers.

Called from hub_config/jupyterhub_config.py. The token (runtime.json "metrics".hub_token) is what
Prometheus sends for /hub/metrics and what the facility exporter sends to list active servers
with their user_options (backend and size).
"""

from __future__ import annotations

from typing import Any

from monitoring.plan import enabled

SERVICE_NAME = "prometheus"
SCOPES = ["read:metrics", "list:users", "read:users:name", "read:servers"]


def configure_hub(c: Any, runtime: dict[str, Any]) -> None:
    """Register the metrics service and its role, when facility.yaml enables metrics."""
    if not enabled(runtime):
        return
    c.JupyterHub.services.append({"name": SERVICE_NAME, "api_token": runtime["metrics"]["hub_token"], "display": False})
    c.JupyterHub.load_roles.append({"name": "metrics", "services": [SERVICE_NAME], "scopes": SCOPES})
