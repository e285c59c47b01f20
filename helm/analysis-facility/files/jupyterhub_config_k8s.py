# JupyterHub configuration in Kubernetes: the project's own configuration (hub_config/
# jupyterhub_config.py, reading facility.yaml and the runtime settings this chart writes), then what
# differs in a cluster: the hub listens for the proxy and the notebook pods, the proxy runs in its
# own pod, notebook pods outlive a hub restart, and the hub itself publishes what `af up` prepares
# for users on a host.

import logging
import os
from pathlib import Path

import hub_config
from af import hub_content
from facility.runtime import read_runtime

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

# Nobody runs `af up` in a cluster: the hub publishes, at each start, the examples every server
# pulls into ~/examples (a new commit only when they changed, so users' edits are kept) and the user
# guide, from the files its image carries (images/Containerfile sets AF_EXAMPLES_DIR and
# AF_USER_GUIDE; a checkout has them at the project's root).
_state = read_runtime().state_path
_state.mkdir(parents=True, exist_ok=True)
_examples = Path(os.environ.get("AF_EXAMPLES_DIR", hub_content.EXAMPLES))
_guide = Path(os.environ.get("AF_USER_GUIDE", hub_content.USER_GUIDE))
if hub_content.example_notebooks(_examples):
    hub_content.publish_examples(_state, _examples)
else:
    logging.getLogger("JupyterHub").warning("No example notebooks in %s: servers pull no examples", _examples)
if _guide.is_file():
    hub_content.render_user_guide(_state, _guide)
