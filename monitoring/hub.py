"""The hub's side of the metrics: a service `prometheus` whose token reads /hub/metrics and the servers,
and the admins' operator page (service `af-operator`, a process `af up` supervises).

Called from hub_config/jupyterhub_config.py. The token (runtime.json "metrics".hub_token) is what
Prometheus sends for /hub/metrics and what the facility exporter sends to list active servers
with their user_options (backend and size).
"""

from __future__ import annotations

import sys
from typing import Any

from facility.hub_services import HubService
from facility.runtime import Runtime
from monitoring.plan import enabled

OPERATOR_SERVICE = "af-operator"  # monitoring.operator_page.SERVICE_NAME, without importing tornado here

SERVICE_NAME = "prometheus"
# read:users: the groups and admin flag, whose quota a user has (monitoring.quota_metrics)
SCOPES = ["read:metrics", "list:users", "read:users", "read:servers"]


def configure_hub(c: Any, runtime: Runtime) -> None:
    """Register the metrics service and its role, when facility.yaml enables metrics."""
    if not enabled(runtime):
        return
    c.JupyterHub.services.append({"name": SERVICE_NAME, "api_token": runtime.metrics["hub_token"], "display": False})
    c.JupyterHub.load_roles.append({"name": "metrics", "services": [SERVICE_NAME], "scopes": SCOPES})


def operator_service(runtime: Runtime) -> HubService | None:
    """The operator page (monitoring/operator_page.py): plots of the same metrics, for admins only
    (it is left out of the hub's Services menu, which would show it to everyone)."""
    # In Kubernetes (helm/) the proxy runs in a pod of its own and could not reach a service on the
    # hub pod's loopback, nor is there a Prometheus of the facility's own: the chart's runtime.json
    # has no operator_port, and sites use the Grafana dashboard instead.
    if not enabled(runtime) or "operator_port" not in runtime.metrics:
        return None
    command = (sys.executable, "-m", "monitoring.operator_page")
    return HubService(OPERATOR_SERVICE, command, port=runtime.metrics["operator_port"])


USAGE_SERVICE = "af-usage"
# The users with their groups and servers (user_options: backend and size), nothing else.
USAGE_SCOPES = ("list:users", "read:users:name", "read:users:groups", "read:servers")


def usage_service() -> HubService:
    """The usage sampler (monitoring/usage_sampler.py): no page, a token that reads who holds which servers."""
    return HubService(USAGE_SERVICE, (sys.executable, "-m", "monitoring.usage_sampler"), scopes=USAGE_SCOPES)
