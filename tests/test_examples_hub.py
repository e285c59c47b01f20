"""The examples repository served by a running facility's hub: `git clone <hub>/hub/examples.git`.

Cloned at both addresses: the public one (through the proxy, as a person would) and the hub's own
(what notebook servers use for the hub's API, and so for their pull). tests/test_slurm.py checks a
Slurm job's server pulling it; tests/test_browser_examples.py the local servers in a browser.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from af.hub_content import example_notebooks
from tests.harness import RunningFacility


def _clone(url: str, target: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": str(target.parent)}
    return subprocess.run(["git", "clone", "-q", url, str(target)], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("address", ["public", "hub_api"])
def test_git_clones_the_examples_from_the_hub(embedded: RunningFacility, tmp_path: Path, address: str) -> None:
    hub = embedded.url if address == "public" else f"http://127.0.0.1:{embedded.runtime['ports']['hub_api']}"
    cloned = _clone(f"{hub}/hub/examples.git", tmp_path / "examples")
    assert cloned.returncode == 0, cloned.stderr
    for notebook in example_notebooks():
        assert (tmp_path / "examples" / notebook.name).read_bytes() == notebook.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "config",
        "index",
        "hooks/pre-commit.sample",
        "%2e%2e/runtime.json",
        "objects/%2e%2e/config",
        "..%2fjupyterhub.sqlite",
    ],
)
def test_the_hub_serves_nothing_but_the_repository(embedded: RunningFacility, path: str) -> None:
    reply = requests.get(f"{embedded.url}/hub/examples.git/{path}", timeout=30, allow_redirects=False)
    assert reply.status_code == 404, (reply.status_code, reply.text[:300])


def test_a_push_is_refused(embedded: RunningFacility, tmp_path: Path) -> None:
    """Read-only: dumb HTTP has no push, and the handler answers nothing but GET and HEAD."""
    cloned = _clone(f"{embedded.url}/hub/examples.git", tmp_path / "examples")
    assert cloned.returncode == 0, cloned.stderr
    work = tmp_path / "examples"
    (work / "mine.ipynb").write_text("{}\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", *ident, "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", *ident, "-C", str(work), "commit", "-qm", "mine"], check=True)
    pushed = subprocess.run(
        ["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"],
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
    )
    assert pushed.returncode != 0
    assert requests.post(f"{embedded.url}/hub/examples.git/HEAD", timeout=30).status_code in (403, 405)
