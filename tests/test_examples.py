"""The examples repository that `af up` publishes and the user guide it renders, without a facility.

The browser tests (tests/test_browser_examples.py) check what users see of both.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from af.hub_content import example_notebooks, render_user_guide
from facility import examples

ROOT = Path(__file__).resolve().parent.parent


def _log(repo: Path) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(repo), "log", "--format=%s"], capture_output=True, text=True)
    return out.stdout.splitlines()


def _tree(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "--name-only", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.split()


def test_publish_commits_only_when_the_examples_change(tmp_path):
    repo = examples.repo_path(tmp_path / "state")
    a, b = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    a.write_text("{}\n")
    b.write_text('{"cells": []}\n')

    assert examples.publish(repo, [a]) is True
    assert examples.publish(repo, [a]) is False  # unchanged: no commit, users' pulls change nothing
    assert len(_log(repo)) == 1
    assert examples.publish(repo, [a, b]) is True
    assert _tree(repo) == ["a.ipynb", "b.ipynb"]
    a.write_text('{"edited": true}\n')
    assert examples.publish(repo, [a]) is True  # b removed upstream, a changed
    assert _tree(repo) == ["a.ipynb"]
    assert len(_log(repo)) == 3
    assert (repo / "HEAD").stat().st_mode & 0o044 == 0o044  # others may clone it


def test_publish_refuses_a_missing_file(tmp_path):
    with pytest.raises(examples.ExamplesError, match=r"example files not found: .*nope\.ipynb"):
        examples.publish(tmp_path / "examples.git", [tmp_path / "nope.ipynb"])


@pytest.fixture
def open_tmp():
    """A temporary folder others may pass through (pytest's own lies below a 0700 folder)."""
    with tempfile.TemporaryDirectory(prefix="af-examples-test-") as folder:
        Path(folder).chmod(0o755)
        yield Path(folder)


def test_another_account_may_clone_the_repository(open_tmp):
    """Git refuses a repository owned by someone else unless the servers' environment names it safe."""
    tmp_path = open_tmp
    repo = examples.repo_path(tmp_path / "state")
    notebook = tmp_path / "first_steps.ipynb"
    notebook.write_text("{}\n")
    examples.publish(repo, [notebook])
    target = tmp_path / "home"
    target.mkdir()
    target.chmod(0o777)
    clone = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "git", "clone", "-q", str(repo)]
    env = {"HOME": str(target), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run([*clone, str(target / "plain")], env=env, capture_output=True, text=True)
    assert "dubious ownership" in refused.stderr  # so the environment below is what makes it work
    allowed = subprocess.run(
        [*clone, str(target / "examples")],
        env={**env, **examples.git_environment(repo)},
        capture_output=True,
        text=True,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert (target / "examples" / "first_steps.ipynb").read_text() == "{}\n"


def test_pull_url_sends_nbgitpuller_to_the_repository_then_lab():
    url = examples.pull_url(Path("/state/examples.git"))
    parts = urlsplit(url)
    assert parts.path == "/git-pull"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "repo": "/state/examples.git",
        "branch": "main",
        "targetpath": "examples",
        "urlpath": "lab",
        "app": "lab",
    }


def test_the_project_ships_both_examples():
    names = [p.name for p in example_notebooks()]
    assert names == [examples.FIRST_STEPS, "ttbar_analysis.ipynb"]


def test_user_guide_renders_to_html(tmp_path):
    html = render_user_guide(tmp_path).read_text()
    assert "<h1>User guide: analysing data on the facility</h1>" in html
    assert "<table>" in html and "<pre><code" in html
    assert "\n## " not in html  # no raw markdown headings left
    assert "~/examples" in html  # it says where the examples are
    # Links to repository files (../README.md) would lead nowhere below /hub/: their text stays, unlinked.
    assert "the README\nand the facility.yaml reference" in html
    assert re.findall(r'href="([^"]*)"', html) == ["https://nbgitpuller.readthedocs.io"]


def test_only_servers_on_the_facility_host_pull_the_examples():
    """Batch jobs and pods cannot read the host's repository: they keep /lab and no git environment."""
    from backends.registry import KINDS
    from hub_config.examples import with_examples

    repo = "/state/examples.git"
    for name, kind in KINDS.items():
        _, config = with_examples(kind, (object, {"environment": {"AF_BACKEND": name}}), repo)
        if name == "local":
            assert config["default_url"] == examples.pull_url(Path(repo))
            assert config["environment"] == {"AF_BACKEND": name, **examples.git_environment(Path(repo))}
        else:
            assert "default_url" not in config, name  # the hub's /lab
            assert config["environment"] == {"AF_BACKEND": name}, name
    _, config = with_examples(KINDS["local"], (object, {"environment": {}}), "")
    assert "default_url" not in config  # no repository configured: nothing to pull
