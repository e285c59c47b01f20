"""The facility's example notebooks as a git repository that every user's server pulls.

`af up` publishes the project's notebooks into ``<state>/examples.git`` (one commit per change),
which the hub serves read-only over HTTP (hub_config/examples_http.py). Each notebook server pulls
it with nbgitpuller as it starts (hub_config/examples_pull.py): a clone into ``~/examples`` on a
first start, a merge of new commits on later starts, which keeps a user's own edits (a
conflicting upstream change loses to the user's version) and brings new examples. The pull runs
inside the server, so as the user and in their home, on whichever backend it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

REPO_NAME = "examples.git"
BRANCH = "main"
TARGET = "examples"  # the folder in each user's home
FIRST_STEPS = "first_steps.ipynb"
# The origin every user's clone records: a name, not an address. A server's git maps it to the hub
# URL that server uses now (git_environment), so a clone made through another address (the hub
# moved, a test facility on other ports) still fetches.
ORIGIN = "af-hub://examples.git"
# In a notebook server's environment, "1" has it pull ORIGIN into ~/TARGET as it starts.
PULL_ENV = "AF_PULL_EXAMPLES"
# Commits of the examples are the facility's, not a person's.
_IDENTITY = ["-c", "user.name=analysis facility", "-c", "user.email=af@localhost", "-c", "commit.gpgsign=false"]


class ExamplesError(RuntimeError):
    """The examples repository cannot be written; the message says why."""


def repo_path(state: Path) -> Path:
    """The examples repository of a facility whose state folder is `state`."""
    return Path(state) / REPO_NAME


def repo_url(hub_url: str) -> str:
    """The repository's HTTP address below the hub's URL (``http://host:port/hub/``) as servers reach it."""
    return f"{hub_url.rstrip('/')}/{REPO_NAME}"


def is_published(repo: Path) -> bool:
    """Whether `repo` can be cloned over HTTP: published, with the files dumb HTTP reads."""
    return (Path(repo) / "info" / "refs").is_file()


def git_environment(hub_url: str) -> dict[str, str]:
    """Environment of a notebook server whose git fetches ORIGIN from the hub at `hub_url`.

    git's `url.<address>.insteadOf` rewrites ORIGIN on every clone and fetch; GIT_CONFIG_COUNT
    passes it as configuration (git >= 2.31) without a file in the user's home.
    """
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{repo_url(hub_url)}.insteadOf",
        "GIT_CONFIG_VALUE_0": ORIGIN,
    }


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603, S607
    if result.returncode != 0:
        raise ExamplesError(f"git {args[0]} failed in {cwd or '.'}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def publish(repo: Path, files: Iterable[Path]) -> bool:
    """Make the head of `repo` (a bare repository, created if missing) hold exactly `files`.

    Returns True when that made a new commit, False when the examples were already current, so
    users' next pull changes nothing.
    """
    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ExamplesError(f"example files not found: {', '.join(missing)}")
    repo = Path(repo)
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(repo))
    with tempfile.TemporaryDirectory(prefix="af-examples-") as tmp:
        work = Path(tmp)
        for f in files:
            shutil.copy2(f, work / f.name)
        # A throwaway work tree on the bare repository's own index: no clone to keep in sync.
        tree = ["--git-dir", str(repo), "--work-tree", str(work)]
        _git(*tree, "add", "--all", ".", cwd=work)
        has_head = subprocess.run(
            ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", "HEAD"],  # noqa: S607
            capture_output=True,
            check=False,
        )
        changed = has_head.returncode != 0 or bool(_git(*tree, "status", "--porcelain", cwd=work).strip())
        if changed:
            names = ", ".join(sorted(f.name for f in files))
            _git(*tree, "commit", "--quiet", "-m", f"Facility examples: {names}", cwd=work)
    # info/refs and objects/info/packs: what a dumb-HTTP client reads to find the objects.
    _git("--git-dir", str(repo), "update-server-info")
    return changed
