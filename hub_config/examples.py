"""The facility's examples in every user's home: each notebook server starts through nbgitpuller.

`af up` keeps the examples repository current (facility.examples.publish). Here the hub points
every server's default URL at nbgitpuller's /git-pull, so the pull runs inside the user's own
server (their Unix account, their home) each time they reach it from the hub, then JupyterLab opens.
"""

from __future__ import annotations

from typing import Any

from facility import examples
from facility.runtime import Runtime


def configure(c: Any, runtime: Runtime) -> None:
    """Set the spawners' default URL and git environment for the examples of `runtime`'s facility."""
    repo = examples.repo_path(runtime.state_path)
    c.Spawner.default_url = examples.pull_url(repo, then="lab")
    c.Spawner.environment.update(examples.git_environment(repo))
