"""The hub's services that run as processes of their own (facility.hub_services): which ones, and how
the hub registers them. `af up` runs the same list under its supervisor (af.components)."""

from __future__ import annotations

import os
import sys
from typing import Any

from facility.hub_services import HubService, af_service, hub_api_url, hub_entry, hub_role
from facility.model import Facility
from facility.runtime import Runtime
from monitoring.hub import operator_service

DASHBOARD_SERVICE = "dask-dashboards"  # hub_config.dashboard_service.SERVICE_NAME
CULLER_SERVICE = "idle-culler"
ENV_INSTANCE = "AF_INSTANCE"  # set by `af up` for the processes it supervises
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def hub_services(runtime: Runtime, fac: Facility) -> list[HubService]:
    """The service processes of this facility: dashboards, the operator page, the idle culler."""
    services = []
    if runtime.ports.dashboards is not None:  # not in Kubernetes yet
        command = (sys.executable, "-m", "hub_config.dashboard_service")
        services.append(HubService(DASHBOARD_SERVICE, command, port=runtime.ports.dashboards))
    operator = operator_service(runtime)
    if operator:
        services.append(operator)
    if fac.hub.idle_cull_minutes:
        command = (
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={fac.hub.idle_cull_minutes * 60}",
            f"--url={hub_api_url(runtime)}",
        )
        services.append(HubService(CULLER_SERVICE, command, scopes=CULLER_SCOPES))
    return services


def register_services(c: Any, runtime: Runtime, fac: Facility) -> None:
    """Add the service processes and `af`'s own token to the hub's services and roles."""
    managed = ENV_INSTANCE not in os.environ  # no af supervisor beside this hub (the Helm chart's pod)
    for service in [*hub_services(runtime, fac), af_service()]:
        c.JupyterHub.services.append(hub_entry(runtime, service, managed=managed))
        role = hub_role(service)
        if role:
            c.JupyterHub.load_roles.append(role)
