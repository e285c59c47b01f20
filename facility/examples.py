"""The facility's example notebooks as a local git repository that every user's server pulls.

`af up` publishes the project's notebooks into ``<state>/examples.git`` (one commit per change).
Each notebook server's default URL goes through nbgitpuller's ``/git-pull``, which clones that
repository into ``~/examples`` on a first start and merges new commits on later starts; its merge
keeps a user's own edits (a conflicting upstream change loses to the user's version) and brings
new examples. The pull runs inside the server, so as the user and in their home.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlencode

REPO_NAME = "examples.git"
BRANCH = "main"
TARGET = "examples"  # the folder in each user's home
FIRST_STEPS = "first_steps.ipynb"
SAFE_CONFIG = "af-safe.gitconfig"
# Commits of the examples are the facility's, not a person's.
_IDENTITY = ["-c", "user.name=analysis facility", "-c", "user.email=af@localhost", "-c", "commit.gpgsign=false"]


class ExamplesError(RuntimeError):
    """The examples repository cannot be written; the message says why."""


def repo_path(state: Path) -> Path:
    """The examples repository of a facility whose state folder is `state`."""
    return Path(state) / REPO_NAME


def pull_url(repo: Path, then: str = "lab") -> str:
    """The notebook server URL (below its base URL) that pulls `repo` into ~/examples, then opens `then`."""
    query = urlencode({"repo": str(repo), "branch": BRANCH, "targetpath": TARGET, "urlpath": then, "app": "lab"})
    return f"/git-pull?{query}"


def git_environment(repo: Path) -> dict[str, str]:
    """Environment of notebook servers so their git may clone `repo`, which the facility's account owns.

    Git refuses a repository of another owner ("dubious ownership") unless `safe.directory` names
    it in protected configuration; the system file we point to keeps /etc/gitconfig included.
    """
    return {"GIT_CONFIG_SYSTEM": str(Path(repo) / SAFE_CONFIG)}


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
    (repo / SAFE_CONFIG).write_text(f"[include]\n\tpath = /etc/gitconfig\n[safe]\n\tdirectory = {repo}\n")
    # Users' accounts clone it: readable by everyone who may pass through the state folder.
    for path in [repo, *repo.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o755 if path.is_dir() else 0o644))
    return changed
