"""JupyterHub configuration of the facility. Everything site-specific comes from facility.yaml
(via facility.load) and from runtime.json written by `af up` (facility.runtime: ports, secrets,
folders)."""

import os
import sys
from pathlib import Path

import facility
from backends.registry import kind_of
from facility.credentials import credentials_path
from facility.data_environment import data_environment
from facility.runtime import gateway_service_name, read_runtime
from facility.usernames import USERNAME_PATTERN
from hub_config.auth import invert_groups
from hub_config.cluster_lifetime import handlers as cluster_handlers
from hub_config.cluster_lifetime import stop_clusters_hook
from hub_config.dashboard_service import dashboards_prefix
from hub_config.event_creation import configure as configure_event_creation
from hub_config.event_page import configure as configure_event_pages
from hub_config.events import configure as configure_events
from hub_config.examples import configure as configure_examples
from hub_config.idle_groups import post_auth_hook as idle_post_auth_hook
from hub_config.log_once import logging_config as log_spawn_failures_once
from hub_config.run_admission import handlers as run_admission_handlers
from hub_config.server_summary import handlers as server_summary_handlers
from hub_config.services import DASHBOARD_SERVICE, activity_interval, register_services
from hub_config.usage_page import configure as configure_usage_page
from hub_config.user_guide import configure as configure_user_guide
from hub_config.wait_api import handlers as wait_handlers
from monitoring.hub import configure_hub as configure_metrics

c = get_config()  # noqa: F821  (traitlets' config loader provides get_config)
runtime = read_runtime()
fac = facility.load(runtime.facility_file)
state = runtime.state_path
secrets = runtime.secrets
ports = runtime.ports

# Hub, behind a configurable-http-proxy that `af up` supervises separately.
c.JupyterHub.bind_url = runtime.public_url
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{ports.hub_api}"
if fac.hub.subdomains:  # each user's server on an origin of its own: <user>.<host of the public URL>
    c.JupyterHub.subdomain_host = runtime.public_url
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret = bytes.fromhex(secrets.cookie_secret)
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports.proxy_api}"
c.ConfigurableHTTPProxy.auth_token = secrets.proxy_token
# A restart or crash of the hub keeps notebook servers: the hub finds them again from its database
# (spawner state). `af down` stops them through the hub's API first (af.sessions).
c.JupyterHub.cleanup_servers = False
# A failed spawn is logged once, where it fails, not again by each request handler that sees it.
c.JupyterHub.logging_config = log_spawn_failures_once()
# Routes come back within seconds after a restart of the proxy (the hub re-adds missing ones then).
c.JupyterHub.last_activity_interval = 5
c.JupyterHub.template_vars = {"announcement_login": f"Welcome to {fac.title}"}
# Always show the spawn page with the backend's progress messages, even for fast local starts.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# Login.
if fac.auth.type == "local":
    c.JupyterHub.authenticator_class = "hub_config.auth.FacilityPasswordAuthenticator"
    c.FacilityPasswordAuthenticator.credentials_file = str(credentials_path(state))
    c.FacilityPasswordAuthenticator.user_groups = invert_groups(fac.auth.groups)
    throttle = fac.auth.login_throttle
    c.FacilityPasswordAuthenticator.failures_per_user = throttle.failures_per_user
    c.FacilityPasswordAuthenticator.failures_per_address = throttle.failures_per_address
    c.FacilityPasswordAuthenticator.lockout_seconds = throttle.lockout_seconds
    c.FacilityPasswordAuthenticator.failures_folder = str(state)  # counts outlive a hub restart
    # Own credentials (`af user add`) only, unless facility.yaml opts into a shared password:
    # then any new name may log in with it, but never one that has its own credential.
    if fac.auth.shared_password:
        c.FacilityPasswordAuthenticator.user_password = secrets.user_password
    c.Authenticator.allow_all = fac.auth.shared_password
    c.Authenticator.manage_groups = True
else:
    from hub_config.oidc import configure_oidc

    configure_oidc(c, fac)
c.Authenticator.admin_users = set(fac.auth.admin_users)
# Idle culling per group (hub.idle_cull): each login puts the user into the group of their timeout.
c.Authenticator.post_auth_hook = idle_post_auth_hook(lambda: facility.current(runtime.facility_file).hub.idle_cull)
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
# jupyterhub-singleuser without a 2 s import it never needs (hub_config/singleuser.py).
c.Spawner.cmd = [str(Path(sys.prefix) / "bin" / "af-singleuser")]
c.Spawner.default_url = "/lab"
if os.geteuid() == 0:
    # The embedded facility runs local notebook servers as the hub's own user; on a fresh
    # Debian machine that is root, which jupyter-server refuses unless told.
    c.Spawner.args = ["--ServerApp.allow_root=True"]
# Spawn storms (hub.spawn of facility.yaml): local servers queue in hub_config.spawn_queue; the
# hub itself refuses only beyond the queue. Both timeouts bind the spawner the hub sees.
c.JupyterHub.concurrent_spawn_limit = fac.hub.spawn.concurrent + fac.hub.spawn.queue_limit
c.Spawner.http_timeout = fac.hub.spawn.http_timeout_seconds
c.Spawner.start_timeout = fac.hub.start_timeout_seconds
# A server's stop (not a hub restart) stops its user's Dask clusters, unless started to outlive it.
c.Spawner.post_stop_hook = stop_clusters_hook(runtime.gateways)
c.JupyterHub.extra_handlers.extend(cluster_handlers(runtime.gateways))  # the home page's note on them
c.JupyterHub.extra_handlers.extend(server_summary_handlers())  # the home page's server: backend, size, kernels
# `af run` in a notebook server: the hub counts it against the user's quota (/hub/api/af/runs)
c.JupyterHub.extra_handlers.extend(run_admission_handlers(runtime))
c.Spawner.environment = {
    "AF_FACILITY": runtime.facility_file,
    "AF_INSTANCE": runtime.state_dir,
    # How often a server tells the hub its last activity (a busy kernel counts, hub_config.busy_kernels):
    # often enough for the idle cullers' checks (jupyterhub-singleuser's default is 300 s).
    "JUPYTERHUB_ACTIVITY_INTERVAL": str(activity_interval(fac.hub.idle_cull)),
}
configure_examples(c, runtime)  # /hub/examples.git; every server pulls ~/examples as it starts
configure_user_guide(c, runtime)  # /hub/user-guide, linked from the home and spawn pages
configure_usage_page(c, runtime, fac.usage.sample_interval_seconds)  # /hub/usage, for admins and instructors
# /hub/events/<name>: an event's participants' servers, for its instructors
configure_event_pages(c, runtime, fac.auth.event_organisers)
configure_event_creation(c, runtime)  # /hub/new-event: admins and auth.event_organisers create events
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
if runtime.gateways:  # the gateways' quota checks read a user's groups and servers (facility.ledger)
    gateway_services = [gateway_service_name(name) for name in runtime.gateways]
    c.JupyterHub.load_roles.append(
        {"name": "gateway-ledger", "services": gateway_services, "scopes": ["read:users", "read:servers"]}
    )
# The Dask dashboards (hub_config/dashboard_service.py), the operator page and the idle culler run
# under af's supervisor, not as the hub's children (hub_config/services.py).
register_services(c, runtime, fac)
# Events (after the services and roles above, to which it adds `af event`'s): windows, allowances, materials.
configure_events(c, runtime, local_auth=fac.auth.type == "local")

# Prometheus reads /hub/metrics with this service's token (monitoring/hub.py), when metrics are enabled.
configure_metrics(c, runtime)
