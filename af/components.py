"""The processes of a running facility: what each runs, where it listens, how to tell it is up."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import facility
import gateway
import hub_config
from af import rucio_server, xrootd
from facility import data_tokens
from facility.hub_services import service_environment
from facility.runtime import Runtime
from hub_config.services import hub_services

VENV_BIN = Path(sys.prefix) / "bin"
PROJECT_ROOT = Path(hub_config.__file__).resolve().parent.parent


class MissingDependency(RuntimeError):
    """A program the facility needs is not installed."""


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    port: int | None  # None: it listens nowhere (the idle culler); up means running
    health_path: str | None  # HTTP path that answers when up; None: the port accepting is enough
    env: dict[str, str] = field(default_factory=dict)
    priority: int = 50
    health_port: int | None = None  # where health_path is asked, when not `port`


def find_program(name: str, hint: str) -> str:
    """A program from the project's venv, its node_modules, or PATH; a clear error if absent."""
    for candidate in (VENV_BIN / name, PROJECT_ROOT / "node_modules" / ".bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise MissingDependency(f"{name} is not installed ({hint}); run `make install`")
    return found


def components(runtime: Runtime) -> list[Component]:
    ports = runtime.ports
    base_env = {"AF_RUNTIME": str(runtime.file), "AF_INSTANCE": runtime.state_dir}
    chp = find_program("configurable-http-proxy", "npm package configurable-http-proxy")
    result = [
        Component(
            name="proxy",
            command=[
                chp,
                "--ip=127.0.0.1",
                f"--port={ports.public}",
                "--api-ip=127.0.0.1",
                f"--api-port={ports.proxy_api}",
                f"--error-target=http://127.0.0.1:{ports.hub_api}/hub/error",
                # A restarted proxy reaches the hub at once; the hub re-adds the other routes
                # within its last_activity_interval (hub_config/jupyterhub_config.py).
                f"--default-target=http://127.0.0.1:{ports.hub_api}",
                "--log-level=info",
                # hub.subdomains: routes name the host too (<user>.localhost/user/<user>/).
                *(["--host-routing"] if facility.load(runtime.facility_file).hub.subdomains else []),
            ],
            port=ports.public,
            health_path=None,
            env={**base_env, "CONFIGPROXY_AUTH_TOKEN": runtime.secrets.proxy_token},
            priority=10,
        ),
        Component(
            name="hub",
            command=[
                find_program("jupyterhub", "Python package jupyterhub"),
                "-f",
                str(Path(hub_config.__file__).parent / "jupyterhub_config.py"),
            ],
            port=ports.hub_api,
            # Asked through the proxy: the hub answers on its own port before it has put its
            # routes into the proxy, and a login in that window gets the proxy's 404.
            health_path="/hub/health",
            health_port=ports.public,
            env={**base_env, **{k: os.environ[k] for k in runtime.hub_env if k in os.environ}},
            priority=20,
        ),
    ]
    gateway_config = str(Path(gateway.__file__).parent / "gateway_config.py")
    server = find_program("dask-gateway-server", "Python package dask-gateway-server")
    for name, gw in runtime.gateways.items():
        result.append(
            Component(
                name=f"gateway-{name}",
                command=[server, "-f", gateway_config],
                port=gw.port,
                health_path="/api/health",
                env={**base_env, "AF_GATEWAY_BACKEND": name},
                priority=30,
            )
        )
    # The hub's services (dashboards, operator page, idle culler): one supervised owner per port.
    for service in hub_services(runtime, facility.load(runtime.facility_file)):
        result.append(
            Component(
                name=service.name,
                command=list(service.command),
                port=service.port,
                health_path=None,
                env={**base_env, **service_environment(runtime, service)},
                priority=25,
            )
        )
    # Archives the homes of events whose grace period after the close has passed (af/event_archive.py).
    keeper = [str(VENV_BIN / "af"), "--state-dir", runtime.state_dir, "event", "keep"]
    result.append(
        Component(name="event-keeper", command=keeper, port=None, health_path=None, env=base_env, priority=40)
    )
    result += data_lake_components(runtime, base_env)
    result += rucio_components(runtime, base_env)
    # Imported here: monitoring.components builds this module's Component.
    from monitoring.components import metrics_components

    result += metrics_components(runtime, base_env)
    return result


def data_lake_components(runtime: Runtime, base_env: dict[str, str]) -> list[Component]:
    """The XRootD origin and XCaches this facility runs itself (af.xrootd); they start first."""
    servers = xrootd.managed_servers(runtime)
    if not servers:
        return []
    program = find_program("xrootd", "Debian package xrootd-server")
    return [
        Component(
            name=name,
            command=xrootd.server_command(program, runtime, name),
            port=server["port"],
            health_path=None,
            env={**base_env, **data_tokens.server_env(runtime, name)},
            priority=5,
        )
        for name, server in servers
    ]


def rucio_components(runtime: Runtime, base_env: dict[str, str]) -> list[Component]:
    """The Rucio server of data.rucio (af.rucio_server), served by gunicorn from its own venv."""
    settings = runtime.data.get("rucio") or {}
    if not settings.get("managed"):
        return []
    try:
        command = rucio_server.server_command(runtime)
    except rucio_server.RucioSetupError as exc:
        raise MissingDependency(str(exc)) from None
    return [
        Component(
            name=rucio_server.COMPONENT,
            command=command,
            port=settings["port"],
            health_path="/ping",
            env={**base_env, **rucio_server.server_env(runtime)},
            priority=6,
        )
    ]
