"""An event's materials in each participant's home, pulled by nbgitpuller as the facility's examples are.

Materials are a git URL the notebook servers can reach (pulled from there) or a local path (a
folder or a git repository) that `af event create` publishes into ``<state>/events/<name>.git``,
served read-only by the hub at /hub/events/<name>.git (hub_config/events.py) the way the examples
are (facility.examples). A participant's server opens through nbgitpuller's /git-pull, which clones
the materials into ``~/<event>`` at the first start and merges later commits, keeping the
participant's own edits (nbgitpuller's merge lets a participant's change win).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from facility.examples import ExamplesError

BRANCH = "main"  # of materials published from a local path
HUB_SCHEME = "af-hub://"  # a name a server's git maps to its hub's URL (see facility.examples.ORIGIN)
_REMOTE = re.compile(r"^(https?|git|ssh)://|^[\w.-]+@[\w.-]+:")
_IDENTITY = ["-c", "user.name=analysis facility", "-c", "user.email=af@localhost", "-c", "commit.gpgsign=false"]


def is_remote(materials: str) -> bool:
    """Whether the materials are a git address (pulled from there) rather than a local path."""
    return bool(_REMOTE.match(materials))


def repos_folder(state: Path) -> Path:
    """Where the events' published materials live (the hub serves this folder's repositories)."""
    return Path(state) / "events"


def repo_path(state: Path, event: str) -> Path:
    """The repository an event's local materials are published into."""
    return repos_folder(state) / f"{event}.git"


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603, S607
    if result.returncode != 0:
        raise ExamplesError(f"git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def publish(state: Path, event: str, source: Path) -> Path:
    """Publish a local folder's files (a git repository's committed head, or a plain folder's files)
    as the event's materials repository; a later call adds a commit with the folder's new state."""
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise ExamplesError(f"materials: {source} is not a folder (give a folder or a git URL)")
    repo = repo_path(state, event)
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(repo))
    with tempfile.TemporaryDirectory(prefix="af-materials-") as tmp:
        work = Path(tmp) / "tree"
        if (source / ".git").exists():  # a repository: its committed files, not its work in progress
            _git("clone", "--quiet", "--depth", "1", f"file://{source}", str(work))
            shutil.rmtree(work / ".git")
        else:
            shutil.copytree(source, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        tree = ["--git-dir", str(repo), "--work-tree", str(work)]
        _git(*tree, "add", "--all", ".", cwd=work)
        if _git(*tree, "status", "--porcelain", cwd=work).strip():
            _git(*tree, "commit", "--quiet", "-m", f"Materials of event {event} from {source}", cwd=work)
    _git("--git-dir", str(repo), "update-server-info")  # what a dumb-HTTP clone reads
    return repo


def pull_url(event: str, materials: str, branch: str = "") -> str:
    """The notebook server URL (below its base URL) that pulls the materials into ~/<event> and then
    opens that folder in JupyterLab."""
    query = {"repo": materials if is_remote(materials) else f"{HUB_SCHEME}events/{event}.git"}
    if is_remote(materials):
        if branch:
            query["branch"] = branch
    else:
        query.update(branch=BRANCH, depth="0")  # dumb HTTP serves full clones only
    query.update(targetpath=event, urlpath=f"lab/tree/{event}", app="lab")
    return f"/git-pull?{urlencode(query)}"


def git_environment(hub_url: str) -> dict[str, str]:
    """Environment of a server whose git maps af-hub://<path> to <hub_url>/<path> (examples and
    events alike), passed as configuration so no file in the participant's home is needed."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{hub_url.rstrip('/')}/.insteadOf",
        "GIT_CONFIG_VALUE_0": HUB_SCHEME,
    }
