"""A jupyter-server extension of `af-singleuser`: ~/examples pulled from the hub as the server starts.

The pull used to be the server's landing page, nbgitpuller's /git-pull: a page, an event stream
through the proxy and a redirect between "server ready" and JupyterLab, seconds on every start;
under load a Slurm job's server once stayed on that page for 180 s (CI run 14). Here nbgitpuller's
own GitPuller does the same pull (clone on a first start, its merge on later ones, which keeps the
user's edits) inside the server before it answers, so the hub's "ready" opens JupyterLab with
~/examples in place. A pull that cannot finish is waited for at most PULL_WAIT_S; the server
starts anyway and says so in its log, and the pull carries on in the background.

Only servers whose environment has facility.examples.PULL_ENV pull (hub_config.examples sets it
when the hub serves the repository); git maps facility.examples.ORIGIN to the hub's address.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from facility import examples

EXTENSION = "hub_config.examples_pull"
PULL_WAIT_S = 30  # far below the hub's http_timeout (hub.spawn.http_timeout_seconds, 120 by default)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": EXTENSION}]


def pull_examples(root: Path, log: Any) -> None:
    """Clone or merge ORIGIN into root/TARGET with nbgitpuller, logging what git says; errors are logged."""
    from nbgitpuller.pull import GitPuller  # imported only by servers that pull

    target = root / examples.TARGET
    try:
        # depth 0 is a full clone: nbgitpuller's default (1) is shallow, which dumb HTTP cannot serve.
        puller = GitPuller(examples.ORIGIN, str(target), branch=examples.BRANCH, depth=0)
        for line in puller.pull():
            log.debug("examples: %s", line.rstrip())
    except Exception as exc:  # a failed pull leaves the user's examples as they were; the server starts
        said = (getattr(exc, "stderr", None) or "").strip()  # git's own words, where nbgitpuller kept them
        log.warning("The facility's examples in %s were not updated: %s", target, said or exc)
    else:
        log.info("The facility's examples are up to date in %s", target)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    if os.environ.get(examples.PULL_ENV) != "1":
        return
    root = Path(serverapp.root_dir).expanduser()
    pulling = threading.Thread(target=pull_examples, args=(root, serverapp.log), name="af-examples-pull", daemon=True)
    pulling.start()
    pulling.join(PULL_WAIT_S)
    if pulling.is_alive():
        serverapp.log.warning(
            "The facility's examples are still being pulled after %d s; starting without waiting for them", PULL_WAIT_S
        )
