# JupyterHub configuration in Kubernetes: the project's own configuration (hub_config/
# jupyterhub_config.py, reading facility.yaml and the runtime settings this chart writes), then what
# differs in a cluster: the hub listens for the proxy and the notebook pods, the proxy runs in its
# own pod, notebook pods outlive a hub restart.

import os
from pathlib import Path

import hub_config

# traitlets' config loader provides get_config and load_subconfig.
c = get_config()  # noqa: F821
load_subconfig(str(Path(hub_config.__file__).parent / "jupyterhub_config.py"))  # noqa: F821

c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{os.environ['AF_HUB_SERVICE']}:8081"
c.ConfigurableHTTPProxy.api_url = f"http://{os.environ['AF_PROXY_API_SERVICE']}:8001"
c.JupyterHub.cleanup_servers = False
c.Spawner.cmd = ["af-singleuser"]  # the notebook image's own (images/Containerfile installs the project)
c.Spawner.args = []
c.KubeSpawner.start_timeout = int(os.environ.get("AF_START_TIMEOUT", "600"))
