"""dask-gateway-server configuration for one backend of facility.yaml.

`af up` starts one gateway per backend that runs on this host, each as a JupyterHub service:
    AF_RUNTIME=runtime.json AF_GATEWAY_BACKEND=<name> dask-gateway-server -f gateway_config.py
"""

# ruff: noqa: F821  (`c` is injected by dask-gateway-server when it loads this file)
import os
from pathlib import Path

import facility
from dask_backends.backends import backend_class_for
from dask_backends.dashboard_guard import with_dashboard_keys
from dask_backends.options import cluster_options_per_user
from hub_config.runtime import gateway_service_name, load_runtime

runtime = load_runtime()
fac = facility.load(runtime["facility_file"])
name = os.environ["AF_GATEWAY_BACKEND"]
backend = fac.backend(name)
gateway = runtime["gateways"][name]
state = Path(runtime["state_dir"]) / "gateways" / name
state.mkdir(parents=True, exist_ok=True)

c.DaskGateway.address = f"127.0.0.1:{gateway['api_port']}"
c.Proxy.address = f"127.0.0.1:{gateway['port']}"
c.Proxy.tcp_address = f"127.0.0.1:{gateway['port']}"

c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = f"http://127.0.0.1:{runtime['ports']['hub_api']}/hub/api"
c.JupyterHubAuthenticator.jupyterhub_api_token = gateway["api_token"]
c.JupyterHubAuthenticator.jupyterhub_service_name = gateway_service_name(name)

c.DaskGateway.backend_class = backend_class_for(backend.kind)
c.Backend.cluster_options = cluster_options_per_user(fac, backend)  # narrowed to each user's allowance
# distributed 2026 dropped the dask-scheduler / dask-worker scripts that dask-gateway defaults to.
# Dashboards only for their owner: schedulers and workers refuse HTTP requests without their
# cluster's key (dask_backends.dashboard_guard), which only the gateway and the hub can compute.
c.ClusterConfig.scheduler_cmd = ["dask", "scheduler", "--preload", "dask_backends.dashboard_guard"]
c.ClusterConfig.worker_cmd = ["dask", "worker", "--preload", "dask_backends.dashboard_guard"]
c.DashboardKeyMixin.dashboard_secret = runtime["secrets"]["dashboard_secret"]
c.ClusterConfig.cluster_max_workers = backend.dask.workers.max
c.ClusterConfig.idle_timeout = backend.dask.idle_timeout_minutes * 60
c.DBBackendBase.db_url = f"sqlite:///{state / 'gateway.sqlite'}"
c.DBBackendBase.db_encrypt_keys = [runtime["secrets"]["gateway_db_key"]]
c.DBBackendBase.stop_clusters_on_shutdown = True
if backend.kind == "local":
    c.LocalBackend.clusters_directory = str(state / "clusters")
    if fac.auth.unix_accounts.per_user:  # schedulers and workers as the user's own Unix account
        c.DaskGateway.backend_class = "dask_backends.local.PerUserLocalBackend"
        c.PerUserLocalBackend.account_prefix = fac.auth.unix_accounts.prefix
        c.PerUserLocalBackend.account_group = fac.auth.unix_accounts.group
    # Marks schedulers and workers as this instance's, so `af down` can find any left behind.
    from dask_gateway_server.backends.local import LocalBackend

    c.LocalBackend.inherited_environment = [
        *LocalBackend.class_traits()["inherited_environment"].default(),
        "AF_INSTANCE",
    ]
if backend.kind == "slurm":
    from dask_backends.slurm import configure as configure_slurm

    configure_slurm(c, runtime["facility_file"], backend, state)
if backend.kind == "htcondor":
    from dask_backends.htcondor import configure_gateway as configure_htcondor

    configure_htcondor(c, fac, backend, runtime["facility_file"], state)
# Whichever backend class was chosen above gives its clusters their dashboard keys.
c.DaskGateway.backend_class = with_dashboard_keys(c.DaskGateway.backend_class)
# /api/metrics and /api/af/holdings for Prometheus and `af status`, when metrics are enabled (monitoring/).
if runtime.get("metrics"):
    from monitoring.gateway import with_metrics

    c.DaskGateway.backend_class = with_metrics(c.DaskGateway.backend_class)
    c.GatewayMetricsMixin.metrics_token = runtime["metrics"]["scrape_token"]
