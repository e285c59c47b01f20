"""The facility's examples in every user's home: notebook servers start through nbgitpuller.

`af up` keeps the examples repository current (facility.examples.publish). For servers that run
on the facility host and can read that repository (the local kind), the hub sets the server's
default URL to nbgitpuller's /git-pull, so the pull runs inside the user's own server (their Unix
account, their home) each time they reach it from the hub, then JupyterLab opens. Servers
elsewhere (batch jobs on other nodes, pods) keep /lab: the repository's path means nothing there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.common.notebook_child import ChildConfig
from backends.registry import Kind
from facility import examples
from facility.runtime import Runtime


def configure(c: Any, runtime: Runtime) -> None:
    """Tell the FacilitySpawner where the examples repository of `runtime`'s facility is."""
    c.FacilitySpawner.examples_repo = str(examples.repo_path(runtime.state_path))


def can_pull(kind: Kind) -> bool:
    """Whether servers of a kind run on the facility host itself, where the repository is."""
    return kind.runs_on_this_host and not kind.is_batch


def with_examples(kind: Kind, child: ChildConfig, repo: str) -> ChildConfig:
    """The child spawner's config, with the pulling default URL and git environment where they apply."""
    cls, config = child
    if repo and can_pull(kind):
        config = {**config, "default_url": examples.pull_url(Path(repo), then="lab")}
        config["environment"] = {**config.get("environment", {}), **examples.git_environment(Path(repo))}
    return cls, config
