"""The hub's services that run as their own processes: supervised by `af`, known to the hub by url and token.

A service the hub starts itself (`command`) is the hub's child: after a `kill -9` of the hub the old
copy kept its port and every new copy died "Address already in use". So `af up` supervises each
of them like the hub (one owner per port), and the hub registers them as external services. Their
tokens derive from one secret, so the hub's configuration and `af` compute the same ones.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from facility.runtime import ENV_RUNTIME, Runtime

AF_SERVICE = "af"  # the token `af down` uses to stop notebook servers cleanly
# read:users: groups and admin flag, for the quota use `af status` shows
AF_SCOPES = ("list:users", "read:users", "read:servers", "delete:servers")


@dataclass(frozen=True)
class HubService:
    name: str
    command: tuple[str, ...]  # what af's supervisor runs
    port: int | None = None  # where it listens; None: it has no page (the idle culler)
    scopes: tuple[str, ...] = ()  # of the service's own role, when it calls the hub's API


def service_token(runtime: Runtime, name: str) -> str:
    """The service's hub API token: an HMAC of its name under the facility's services key."""
    return hmac.new(bytes.fromhex(runtime.secrets.services_key), name.encode(), hashlib.sha256).hexdigest()


def hub_entry(runtime: Runtime, service: HubService, managed: bool = False) -> dict[str, Any]:
    """The service's item of c.JupyterHub.services: external (url and token) where af supervises
    it; `managed` (the hub starts `command`) where no supervisor runs beside the hub (the chart's pod)."""
    entry: dict[str, Any] = {"name": service.name, "api_token": service_token(runtime, service.name), "display": False}
    if service.port is not None:
        entry.update(url=f"http://127.0.0.1:{service.port}", oauth_no_confirm=True)
    if managed and service.command:
        # The runtime.json this hub read: in the chart's pod a Secret mounted outside the state folder.
        runtime_file = os.environ.get(ENV_RUNTIME) or str(runtime.file)
        entry.update(command=list(service.command), environment={ENV_RUNTIME: runtime_file})
    return entry


def hub_role(service: HubService) -> dict[str, Any] | None:
    """The service's item of c.JupyterHub.load_roles, when it calls the hub's API."""
    if not service.scopes:
        return None
    return {"name": f"{service.name}-service", "services": [service.name], "scopes": list(service.scopes)}


def hub_api_url(runtime: Runtime) -> str:
    return f"http://127.0.0.1:{runtime.ports.hub_api}/hub/api"


def service_environment(runtime: Runtime, service: HubService) -> dict[str, str]:
    """The JUPYTERHUB_* variables the hub gives a service it starts, for one af starts instead."""
    prefix = f"/services/{service.name}/"
    env = {
        "JUPYTERHUB_SERVICE_NAME": service.name,
        "JUPYTERHUB_API_TOKEN": service_token(runtime, service.name),
        "JUPYTERHUB_API_URL": hub_api_url(runtime),
        "JUPYTERHUB_BASE_URL": "/",
    }
    if service.port is not None:
        env.update(
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{service.port}",
            JUPYTERHUB_SERVICE_PREFIX=prefix,
            JUPYTERHUB_CLIENT_ID=f"service-{service.name}",
            JUPYTERHUB_OAUTH_CALLBACK_URL=f"{prefix}oauth_callback",
        )  # access scope: HubAuth's default for $JUPYTERHUB_SERVICE_NAME, access:services!service=<name>
    return env


def af_service() -> HubService:
    """`af` itself: no process, a token that may list and stop notebook servers."""
    return HubService(name=AF_SERVICE, command=(), scopes=AF_SCOPES)


EVENTS_SERVICE = "af-events"  # the token `af event` uses to create participants and their group, and stop them
# servers: pre-warm and stop them; shares: revoke the instructors' shares of them at the end
EVENTS_SCOPES = ("admin:users", "admin:groups", "list:users", "servers", "shares")


def events_service() -> HubService:
    """`af event`: no process, a token that may create users and groups and start and stop their servers."""
    return HubService(name=EVENTS_SERVICE, command=(), scopes=EVENTS_SCOPES)
