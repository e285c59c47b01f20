"""The hub's read-only HTTP view of the examples repository (hub_config/examples_http.py).

Path checks on a real published repository, then a real `git clone` and `git fetch` through the
handler in a tornado application of its own. tests/test_examples_hub.py clones through a running
facility's hub; tests/test_slurm.py checks that a Slurm notebook server opens with ~/examples.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from tornado import httpclient, web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from facility import examples
from hub_config.examples_http import ROUTE, ExamplesRepoHandler, served_file

pytestmark = pytest.mark.no_facility


def _rev(repo: Path, what: str = "HEAD") -> str:
    out = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", what], capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    notebook = tmp_path / "first_steps.ipynb"
    notebook.write_text('{"cells": []}\n')
    repo = examples.repo_path(tmp_path / "state")
    examples.publish(repo, [notebook])
    return repo


def _an_object(repo: Path) -> str:
    head = _rev(repo)
    return f"objects/{head[:2]}/{head[2:]}"


def test_serves_what_a_dumb_http_clone_reads(repo):
    for path in ["HEAD", "info/refs", "objects/info/packs", _an_object(repo)]:
        assert served_file(repo, path) == (repo / path).resolve(), path
    subprocess.run(["git", "--git-dir", str(repo), "repack", "-a", "-d", "-q"], check=True)
    subprocess.run(["git", "--git-dir", str(repo), "update-server-info"], check=True)
    packs = sorted((repo / "objects" / "pack").glob("pack-*"))
    assert packs, "repack wrote no pack"
    for pack in packs:
        if pack.suffix in (".pack", ".idx"):
            assert served_file(repo, f"objects/pack/{pack.name}") == pack.resolve()


@pytest.mark.parametrize(
    "path",
    [
        "config",  # the repository's own settings
        "index",  # publish's work-tree index
        "description",
        "hooks/pre-commit.sample",
        "info/exclude",
        "objects/info/alternates",
        "../runtime.json",  # outside, as written
        "objects/../config",
        "objects/../../state/examples.git/HEAD",
        "/etc/passwd",
        "objects//info/packs",
        "objects\\info\\packs",
        "",
        "objects/pack/pack-0000000000000000000000000000000000000000.keep",
    ],
)
def test_refuses_anything_else(repo, path):
    if path == "index":
        assert (repo / "index").is_file()  # it exists: refused because it is not a clone's file
    assert served_file(repo, path) is None


def test_refuses_a_symlink_out_of_the_repository(repo, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not for users\n")
    link = repo / "objects" / "ab" / ("c" * 38)
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(secret)
    assert served_file(repo, f"objects/ab/{'c' * 38}") is None
    (repo / "info" / "refs").unlink()
    (repo / "info" / "refs").symlink_to(secret)
    assert served_file(repo, "info/refs") is None


def test_refuses_a_missing_object_or_a_folder(repo):
    assert served_file(repo, f"objects/00/{'0' * 38}") is None
    (repo / "objects" / "ee" / ("e" * 38)).mkdir(parents=True)
    assert served_file(repo, f"objects/ee/{'e' * 38}") is None


def _serve_and_run(repo: Path, client) -> object:
    """Run the blocking `client(base_url)` against the handler on a free loopback port."""

    async def main() -> object:
        app = web.Application([(f"/hub{ROUTE}", ExamplesRepoHandler, {"path": str(repo)})])
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        try:
            return await asyncio.to_thread(client, f"http://127.0.0.1:{port}/hub/")
        finally:
            server.stop()

    return asyncio.run(main())


def test_git_clones_and_fetches_through_the_handler(repo, tmp_path):
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)}
    clone = tmp_path / "clone"
    later = tmp_path / "later.ipynb"
    later.write_text("{}\n")

    def client(hub: str) -> dict[str, object]:
        url = examples.repo_url(hub)
        cloned = subprocess.run(["git", "clone", "-q", url, str(clone)], env=env, capture_output=True, text=True)
        assert cloned.returncode == 0, cloned.stderr
        first = _rev(clone / ".git")
        examples.publish(repo, [clone / "first_steps.ipynb", later])  # the next `af up` adds an example
        fetched = subprocess.run(["git", "-C", str(clone), "pull", "-q"], env=env, capture_output=True, text=True)
        assert fetched.returncode == 0, fetched.stderr
        sync = httpclient.HTTPClient()
        try:
            refs = sync.fetch(f"{url}/info/refs?service=git-upload-pack")
            with pytest.raises(httpclient.HTTPClientError) as refused:
                sync.fetch(f"{url}/config")
        finally:
            sync.close()
        return {"first": first, "refs": refs, "refused": refused.value.code}

    seen = _serve_and_run(repo, client)
    assert (clone / "first_steps.ipynb").read_text() == '{"cells": []}\n'
    assert (clone / "later.ipynb").is_file()  # the fetch after a publish brought the new commit
    assert _rev(clone / ".git") == _rev(repo) != seen["first"]
    assert seen["refs"].headers["Cache-Control"] == "no-cache"
    assert seen["refused"] == 404


def test_a_clone_still_fetches_after_the_hub_moved(repo, tmp_path):
    """Clones record ORIGIN, not the hub's address: a server of a hub on another port still pulls."""
    clone = tmp_path / "clone"
    later = tmp_path / "later.ipynb"
    later.write_text("{}\n")

    def git(hub: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path), **examples.git_environment(hub)}
        return subprocess.run(["git", *args], env=env, capture_output=True, text=True)

    def first_start(hub: str) -> str:
        cloned = git(hub, "clone", "-q", examples.ORIGIN, str(clone))
        assert cloned.returncode == 0, cloned.stderr
        return hub

    first_hub = _serve_and_run(repo, first_start)
    examples.publish(repo, [clone / "first_steps.ipynb", later])
    second_hub = _serve_and_run(repo, lambda hub: (hub, git(hub, "-C", str(clone), "pull", "-q")))
    assert second_hub[0] != first_hub  # another port: the first hub's address leads nowhere now
    assert second_hub[1].returncode == 0, second_hub[1].stderr
    assert (clone / "later.ipynb").is_file()
    assert git(first_hub, "-C", str(clone), "config", "remote.origin.url").stdout.strip() == examples.ORIGIN
