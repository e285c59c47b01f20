"""The hub's side of the metrics: a service `prometheus` whose token reads /hub/metrics and the servers,
and the admins' operator page (service `af-operator`).

Called from hub_config/jupyterhub_config.py. The token (runtime.json "metrics".hub_token) is what
Prometheus sends for /hub/metrics and what the facility exporter sends to list active servers
with their user_options (backend and size).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from facility.runtime import Runtime
from monitoring.plan import enabled

OPERATOR_SERVICE = "af-operator"  # monitoring.operator_page.SERVICE_NAME, without importing tornado here

SERVICE_NAME = "prometheus"
SCOPES = ["read:metrics", "list:users", "read:users:name", "read:servers"]


def configure_hub(c: Any, runtime: Runtime) -> None:
    """Register the metrics service and its role, when facility.yaml enables metrics."""
    if not enabled(runtime):
        return
    c.JupyterHub.services.append({"name": SERVICE_NAME, "api_token": runtime.metrics["hub_token"], "display": False})
    c.JupyterHub.load_roles.append({"name": "metrics", "services": [SERVICE_NAME], "scopes": SCOPES})
    # The operator page (monitoring/operator_page.py): plots of the same metrics, for admins.
    c.JupyterHub.services.append(
        {
            "name": OPERATOR_SERVICE,
            "url": f"http://127.0.0.1:{runtime.metrics['operator_port']}",
            "command": [sys.executable, "-m", "monitoring.operator_page"],
            "environment": {"AF_RUNTIME": os.environ["AF_RUNTIME"], "AF_INSTANCE": runtime.state_dir},
            "oauth_no_confirm": True,
            "display": False,  # admins only: the hub's Services menu would show it to everyone
        }
    )
