"""A notebook server pulls the facility's examples as it starts (hub_config.examples_pull).

Real jupyter servers started with af-singleuser's extra arguments and the environment the hub
gives them (facility.examples.PULL_ENV, git's mapping of the origin), against a real examples
repository published as `af up` does: the examples are in place when the server first answers,
a later start merges upstream changes and keeps the user's edit, and a repository that cannot be
reached, or that never answers, does not keep the server from starting. The same through the hub
and a browser: tests/test_browser_examples.py; on Slurm and HTCondor jobs: tests/batch_helpers.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from facility import examples
from hub_config.examples_pull import PULL_WAIT_S
from hub_config.singleuser import EXTRA_ARGUMENTS
from tests.harness import free_port_block

pytestmark = pytest.mark.no_facility

TOKEN = "examples-pull-test"


class Server:
    def __init__(self, root: Path, origin: str):
        self.root, self.port = root, free_port_block(1)
        self.log = root.parent / f"{root.name}-{self.port}.log"
        env = {
            **os.environ,
            examples.PULL_ENV: "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{origin}.insteadOf",
            "GIT_CONFIG_VALUE_0": examples.ORIGIN,
        }
        command = [
            *(sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}"),
            *("--ServerApp.allow_root=True", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"),
            *EXTRA_ARGUMENTS,
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait_answering(self, timeout: float = 90) -> float:
        """Seconds from now until the server answers its API."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if requests.get(f"{self.url}api/status", params={"token": TOKEN}, timeout=5).ok:
                    return time.monotonic() - start
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"the server did not answer in {timeout} s: {self.log.read_text()[-3000:]}")

    def listing(self) -> list[str]:
        reply = requests.get(f"{self.url}api/contents/examples", params={"token": TOKEN}, timeout=30)
        assert reply.status_code == 200, reply.text
        return sorted(item["name"] for item in reply.json()["content"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def started() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.stop()


def _notebook(folder: Path, name: str, first_cell: str) -> Path:
    cell = {"cell_type": "markdown", "id": "c0", "metadata": {}, "source": [first_cell]}
    path = folder / name
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1))
    return path


def _first_cell(path: Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def test_the_examples_are_in_place_when_the_server_first_answers_and_a_restart_merges(tmp_path, started) -> None:
    upstream, home = tmp_path / "upstream", tmp_path / "home"
    upstream.mkdir(), home.mkdir()
    repo = examples.repo_path(tmp_path / "state")
    examples.publish(repo, [_notebook(upstream, "first_steps.ipynb", "# First steps")])

    first = Server(home, f"file://{repo}")
    started.append(first)
    first.wait_answering()
    assert first.listing() == ["first_steps.ipynb"]  # pulled before the server answered, not after
    assert "The facility's examples are up to date" in first.log.read_text()
    first.stop()

    # The user edits the example; upstream changes the same cell and adds an example.
    (home / "examples" / "first_steps.ipynb").write_text(
        (home / "examples" / "first_steps.ipynb").read_text().replace("# First steps", "# My own notes")
    )
    files = [_notebook(upstream, "first_steps.ipynb", "# First steps, revised"), _notebook(upstream, "new.ipynb", "#")]
    assert examples.publish(repo, files) is True

    again = Server(home, f"file://{repo}")
    started.append(again)
    again.wait_answering()
    assert again.listing() == ["first_steps.ipynb", "new.ipynb"]
    assert _first_cell(home / "examples" / "first_steps.ipynb") == "# My own notes"  # nbgitpuller kept the edit


def test_a_repository_that_cannot_be_reached_does_not_stop_the_server(tmp_path, started) -> None:
    home = tmp_path / "home"
    home.mkdir()
    closed = free_port_block(1)  # nothing listens there
    server = Server(home, f"http://127.0.0.1:{closed}/hub/examples.git")
    started.append(server)
    server.wait_answering()
    assert "The facility's examples in" in server.log.read_text() and "were not updated" in server.log.read_text()
    assert not (home / "examples").exists()


def test_a_repository_that_never_answers_delays_the_start_by_the_wait_at_most(tmp_path, started) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        server = Server(home, f"http://127.0.0.1:{silent.getsockname()[1]}/hub/examples.git")
        started.append(server)
        waited = server.wait_answering(timeout=PULL_WAIT_S + 60)
        log = server.log.read_text()
    assert f"still being pulled after {PULL_WAIT_S} s; starting without waiting" in log, log[-3000:]
    assert waited >= PULL_WAIT_S - 1  # it did wait for the pull, then gave up on it
