"""The facility's examples in every user's home: notebook servers pull them as they start.

`af up` keeps the examples repository current (facility.examples.publish); the hub serves it
read-only at /hub/examples.git (hub_config/examples_http.py). Every server, whatever its backend
(a local process, a batch job on another node, a pod), gets facility.examples.PULL_ENV, which has
af-singleuser's extension hub_config.examples_pull pull facility.examples.ORIGIN with nbgitpuller
before the server answers, and a git environment that maps that name to the repository below the
hub URL the server already uses for the hub's API: the pull runs inside the user's own server
(their account, their home) at each start, and JupyterLab opens with ~/examples in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.common.notebook_child import ChildConfig
from facility import examples
from facility.runtime import Runtime
from hub_config.examples_http import ROUTE, ExamplesRepoHandler


def configure(c: Any, runtime: Runtime) -> None:
    """Serve the examples repository of `runtime`'s facility and tell the FacilitySpawner where it is."""
    repo = examples.repo_path(runtime.state_path)
    c.FacilitySpawner.examples_repo = str(repo)
    # extra_handlers holds other pages too (user guide, predicted wait): add, never assign.
    c.JupyterHub.extra_handlers.append((ROUTE, ExamplesRepoHandler, {"path": str(repo)}))


def with_examples(child: ChildConfig, repo: str, hub_url: str) -> ChildConfig:
    """The child spawner's config with the examples pull switched on and git's address of the hub,
    when the repository is published.

    `hub_url` is the hub's own URL as servers reach it (JupyterHub's Hub.url, from hub_connect_url
    where one is set). A hub without the repository (not set up by `af up`) pulls nothing.
    """
    cls, config = child
    if repo and examples.is_published(Path(repo)):
        pulling = {examples.PULL_ENV: "1", **examples.git_environment(hub_url)}
        config = {**config, "environment": {**config.get("environment", {}), **pulling}}
    return cls, config
