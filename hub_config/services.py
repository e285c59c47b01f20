"""The hub's services that run as processes of their own (facility.hub_services): which ones, and how
the hub registers them. `af up` runs the same list under its supervisor (af.components)."""

from __future__ import annotations

import os
import sys
from typing import Any

from facility.hub_services import HubService, af_service, hub_api_url, hub_entry, hub_role
from facility.model import Facility, IdleCull
from facility.runtime import Runtime
from monitoring.hub import operator_service, usage_service

DASHBOARD_SERVICE = "dask-dashboards"  # hub_config.dashboard_service.SERVICE_NAME
CULLER_SERVICE = "idle-culler"
ENV_INSTANCE = "AF_INSTANCE"  # set by `af up` for the processes it supervises
# Each culler's token lists only its own group's users, so it culls only those (the culler acts on
# what GET /users returns); hub_config.idle_groups puts each user into the group of their timeout.
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def hub_services(runtime: Runtime, fac: Facility) -> list[HubService]:
    """The service processes of this facility: dashboards, the operator page, the usage sampler, the idle culler."""
    services = []
    if runtime.ports.dashboards is not None:  # not in Kubernetes yet
        command = (sys.executable, "-m", "hub_config.dashboard_service")
        services.append(HubService(DASHBOARD_SERVICE, command, port=runtime.ports.dashboards))
    operator = operator_service(runtime)
    if operator:
        services.append(operator)
    services.append(usage_service())
    services.extend(culler_services(runtime, fac.hub.idle_cull))
    return services


def activity_interval(cull: IdleCull) -> int:
    """Seconds between a notebook server's activity reports to the hub: a quarter of the shortest
    timeout, at most jupyterhub-singleuser's default of 300 s."""
    shortest = min(cull.timeouts, default=0) * 60
    return max(5, min(300, shortest // 4 or 300))


def culler_name(cull: IdleCull, minutes: int) -> str:
    """`idle-culler` for the default timeout, `idle-culler-<minutes>m` for the groups' others."""
    return CULLER_SERVICE if minutes == cull.minutes else f"{CULLER_SERVICE}-{minutes}m"


def culler_services(runtime: Runtime, cull: IdleCull) -> list[HubService]:
    """One jupyterhub-idle-culler per distinct timeout, each limited to its timeout's hub group."""
    services = []
    for minutes in cull.timeouts:
        group = IdleCull.group_of(minutes)
        command = (
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={minutes * 60}",
            f"--cull-every={cull.check_every_seconds}",
            f"--url={hub_api_url(runtime)}",
        )
        scopes = tuple(f"{scope}!group={group}" for scope in CULLER_SCOPES)
        services.append(HubService(culler_name(cull, minutes), command, scopes=scopes))
    return services


def register_services(c: Any, runtime: Runtime, fac: Facility) -> None:
    """Add the service processes and `af`'s own token to the hub's services and roles."""
    managed = ENV_INSTANCE not in os.environ  # no af supervisor beside this hub (the Helm chart's pod)
    for service in [*hub_services(runtime, fac), af_service()]:
        c.JupyterHub.services.append(hub_entry(runtime, service, managed=managed))
        role = hub_role(service)
        if role:
            c.JupyterHub.load_roles.append(role)
