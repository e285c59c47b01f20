"""dask-gateway-server configuration for one backend of facility.yaml.

`af up` starts one gateway per backend that runs on this host, each as a JupyterHub service:
    AF_RUNTIME=runtime.json AF_GATEWAY_BACKEND=<name> dask-gateway-server -f gateway_config.py

What is the same for every kind is set here; the backend's kind (backends.registry) sets its
backend class, its cluster options and its own traits.
"""

import os

import facility
from backends.registry import kind_of
from facility.runs import runs_dir
from facility.runtime import gateway_service_name, read_runtime
from gateway.dashboard_guard import with_dashboard_keys
from gateway.facility_parts import add_facility_parts
from gateway.keep_clusters import keeping_clusters

c = get_config()  # noqa: F821  (traitlets' config loader provides get_config)
runtime = read_runtime()
fac = facility.load(runtime.facility_file)
name = os.environ["AF_GATEWAY_BACKEND"]
backend = fac.backend(name)
gateway = runtime.gateways[name]
state = runtime.state_path / "gateways" / name
state.mkdir(parents=True, exist_ok=True)

c.DaskGateway.address = f"127.0.0.1:{gateway.api_port}"
c.Proxy.address = f"127.0.0.1:{gateway.port}"
c.Proxy.tcp_address = f"127.0.0.1:{gateway.port}"

c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = f"http://127.0.0.1:{runtime.ports.hub_api}/hub/api"
c.JupyterHubAuthenticator.jupyterhub_api_token = gateway.api_token
c.JupyterHubAuthenticator.jupyterhub_service_name = gateway_service_name(name)

# distributed 2026 dropped the dask-scheduler / dask-worker scripts that dask-gateway defaults to.
# Dashboards only for their owner: schedulers and workers refuse HTTP requests without their
# cluster's key (gateway.dashboard_guard), which only the gateway and the hub can compute.
c.ClusterConfig.scheduler_cmd = ["dask", "scheduler", "--preload", "gateway.dashboard_guard"]
c.ClusterConfig.worker_cmd = ["dask", "worker", "--preload", "gateway.dashboard_guard"]
c.DashboardKeyMixin.dashboard_secret = runtime.secrets.dashboard_secret
c.ClusterConfig.cluster_max_workers = backend.dask.workers.max
c.ClusterConfig.idle_timeout = backend.dask.idle_timeout_minutes * 60
c.DBBackendBase.db_url = f"sqlite:///{state / 'gateway.sqlite'}"
c.DBBackendBase.db_encrypt_keys = [runtime.secrets.gateway_db_key]
# A restart keeps clusters (the database holds them; gateway.keep_clusters); `af down` stops them.
c.DBBackendBase.stop_clusters_on_shutdown = False
# dask-gateway fails a cluster 2 x 15 s after its last heartbeat. A heartbeat sent while the
# gateway pauses (a restart, a busy host) can land later than that: 30.9 s apart in test_quota's
# hung-gateway test, which then lost alice's cluster. A dead scheduler is still found sooner by
# each backend's own check (process, batch job or pod).
c.DBBackendBase.cluster_heartbeat_timeout = 90
c.StopOnlyWhenFacilityStopsMixin.stopping_file = str(runtime.stopping_file)

# The kind's part: backend class, cluster options (narrowed to each user's allowance), its traits.
kind_of(backend).load("gateway")(c, fac, backend, runtime, state)
# Whichever backend class the kind chose gives its clusters their dashboard keys.
c.DaskGateway.backend_class = keeping_clusters(with_dashboard_keys(c.DaskGateway.backend_class))
metrics_token = runtime.metrics["scrape_token"] if runtime.metrics else ""
hub_api = c.JupyterHubAuthenticator.jupyterhub_api_url
add_facility_parts(c, name, gateway.api_token, hub_api, metrics_token)
c.QuotaMixin.facility_file = runtime.facility_file
c.QuotaMixin.peer_gateways = {n: [gw.url, gw.api_token] for n, gw in runtime.gateways.items() if n != name}
c.QuotaMixin.runs_folder = str(runs_dir(runtime.state_dir))
