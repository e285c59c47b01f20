"""The examples repository that `af up` publishes and the user guide it renders, without a facility.

The browser tests (tests/test_browser_examples.py) check what users see of both.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from af.hub_content import example_notebooks, render_user_guide
from facility import examples

pytestmark = pytest.mark.no_facility

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
    assert examples.is_published(repo)  # git update-server-info ran: dumb HTTP can serve it
    refs = (repo / "info" / "refs").read_text().split()
    head = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert refs == [head.stdout.strip(), "refs/heads/main"]  # the latest commit, not the first


def test_publish_refuses_a_missing_file(tmp_path):
    with pytest.raises(examples.ExamplesError, match=r"example files not found: .*nope\.ipynb"):
        examples.publish(tmp_path / "examples.git", [tmp_path / "nope.ipynb"])


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


def test_servers_of_every_kind_pull_from_the_hub(tmp_path):
    """Local processes, batch jobs and pods alike: the server is told to pull as it starts
    (hub_config.examples_pull), git maps the origin to the hub's URL; the landing page stays JupyterLab."""
    from backends.registry import KINDS
    from hub_config.examples import with_examples

    notebook = tmp_path / "first_steps.ipynb"
    notebook.write_text("{}\n")
    repo = examples.repo_path(tmp_path / "state")
    examples.publish(repo, [notebook])
    git = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "url.http://hub.example:8081/hub/examples.git.insteadOf",
        "GIT_CONFIG_VALUE_0": "af-hub://examples.git",
    }
    for name in KINDS:
        _, config = with_examples(
            (object, {"environment": {"AF_BACKEND": name}}), str(repo), "http://hub.example:8081/hub/"
        )
        assert config["environment"] == {"AF_BACKEND": name, "AF_PULL_EXAMPLES": "1", **git}, name
        assert "default_url" not in config, name
    _, config = with_examples((object, {"environment": {}}), "", "http://hub.example:8081/hub/")
    assert config == {"environment": {}}  # no repository configured: nothing to pull
    _, config = with_examples((object, {}), str(tmp_path / "never-published.git"), "http://hub.example:8081/hub/")
    assert config == {}  # a hub without a published repository: nothing to pull
