"""JupyterHub configuration of the facility. Everything site-specific comes from facility.yaml
(via facility.load) and from runtime.json written by `af up` (facility.runtime: ports, secrets,
folders)."""

# ruff: noqa: F821  (`c` is injected by JupyterHub when it loads this file)
import os
import sys
from pathlib import Path

import facility
from backends.registry import kind_of
from facility.data_environment import data_environment
from facility.runtime import gateway_service_name, read_runtime
from facility.usernames import USERNAME_PATTERN
from hub_config.auth import invert_groups
from hub_config.dashboard_service import SERVICE_NAME as DASHBOARD_SERVICE
from hub_config.dashboard_service import dashboards_prefix
from hub_config.wait_api import handlers as wait_handlers
from monitoring.hub import configure_hub as configure_metrics

runtime = read_runtime()
fac = facility.load(runtime.facility_file)
state = runtime.state_path
secrets = runtime.secrets
ports = runtime.ports

# Hub, behind a configurable-http-proxy that `af up` supervises separately.
c.JupyterHub.bind_url = runtime.public_url
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{ports.hub_api}"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret = bytes.fromhex(secrets.cookie_secret)
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports.proxy_api}"
c.ConfigurableHTTPProxy.auth_token = secrets.proxy_token
c.JupyterHub.cleanup_servers = True
c.JupyterHub.template_vars = {"announcement_login": f"Welcome to {fac.title}"}
# Always show the spawn page with the backend's progress messages, even for fast local starts.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# Login.
if fac.auth.type == "local":
    c.JupyterHub.authenticator_class = "hub_config.auth.FacilityPasswordAuthenticator"
    c.FacilityPasswordAuthenticator.user_password = secrets.user_password
    c.FacilityPasswordAuthenticator.admin_password = secrets.admin_password
    c.FacilityPasswordAuthenticator.user_groups = invert_groups(fac.auth.groups)
    c.Authenticator.allow_all = True
    c.Authenticator.manage_groups = True
else:
    from hub_config.oidc import configure_oidc

    configure_oidc(c, fac)
c.Authenticator.admin_users = set(fac.auth.admin_users)
# Usernames end up in paths, job names and batch scripts: refuse anything but plain names at login.
c.Authenticator.username_pattern = USERNAME_PATTERN

# Notebook servers: one form for every backend of facility.yaml.
c.JupyterHub.spawner_class = "hub_config.spawner.FacilitySpawner"
if any(kind_of(b).is_batch for b in fac.backends):
    import batchspawner  # noqa: F401  (adds /hub/api/batchspawner, where batch jobs report their port)
c.FacilitySpawner.facility_file = runtime.facility_file
c.JupyterHub.extra_handlers.extend(wait_handlers())  # the spawn form's predicted wait (hub_config/wait_api.py)
c.FacilitySpawner.home_dir_template = str(state / "home" / "{username}")
c.FacilitySpawner.gateway_urls = {name: gw.url for name, gw in runtime.gateways.items()}
c.FacilitySpawner.data_environments = {b.name: data_environment(fac, b, runtime) for b in fac.backends}
c.Spawner.cmd = [str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
if os.geteuid() == 0:
    # The embedded facility runs local notebook servers as the hub's own user; on a fresh
    # Debian machine that is root, which jupyter-server refuses unless told.
    c.Spawner.args = ["--ServerApp.allow_root=True"]
c.Spawner.http_timeout = 60
c.Spawner.environment = {"AF_FACILITY": runtime.facility_file, "AF_INSTANCE": runtime.state_dir}
# The hub's Dask dashboard service runs where `af up` planned a port for it (not in Kubernetes yet).
serve_dashboards = ports.dashboards is not None
if serve_dashboards:
    c.Spawner.environment["AF_DASK_DASHBOARDS_URL"] = dashboards_prefix(runtime.public_url)
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "read:users:name!user",
    "read:users:groups!user",  # dask-gateway checks backend groups with this
    *[f"access:services!service={gateway_service_name(name)}" for name in runtime.gateways],
    # the Dask panel reads its clusters' counts there
    *([f"access:services!service={DASHBOARD_SERVICE}"] if serve_dashboards else []),
]

# dask-gateway: one gateway service per backend that runs here; users reach those they may use.
c.JupyterHub.services = [
    {"name": gateway_service_name(name), "url": gw.url, "api_token": gw.api_token, "display": False}
    for name, gw in runtime.gateways.items()
]
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "access:services"]},
]
# Dask dashboards, each only for its cluster's owner, through the hub (hub_config/dashboard_service.py).
if serve_dashboards:
    c.JupyterHub.services.append(
        {
            "name": DASHBOARD_SERVICE,
            "url": f"http://127.0.0.1:{ports.dashboards}",
            "command": [sys.executable, "-m", "hub_config.dashboard_service"],
            "environment": {"AF_RUNTIME": os.environ["AF_RUNTIME"], "AF_INSTANCE": runtime.state_dir},
            "oauth_no_confirm": True,
            "display": False,
        }
    )

# Prometheus reads /hub/metrics with this service's token (monitoring/hub.py), when metrics are enabled.
configure_metrics(c, runtime)

if fac.hub.idle_cull_minutes:
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={fac.hub.idle_cull_minutes * 60}"],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        }
    )
