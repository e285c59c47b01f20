"""A kernel running a silent cell keeps its notebook server active (hub_config.busy_kernels).

Two real jupyter servers, one started with af-singleuser's extra arguments and one without; in
each a kernel runs a cell that sleeps 20 s printing nothing. The server's last activity, which
jupyterhub-singleuser reports to the hub and the idle culler reads, moves on during the cell
only with the extension: without it the stock server looks idle (jupyterhub-idle-culler#55).
The culling itself, through the hub, is tests/test_idle_culling.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from hub_config.busy_kernels import CHECK_SECONDS
from hub_config.singleuser import EXTRA_ARGUMENTS
from tests.harness import execute_in_kernel, free_port_block

TOKEN = "busy-kernels-test"
CELL = "import time\nfor _ in range(20):\n    time.sleep(1)\nprint('done')"


def _start(folder: Path, extra: tuple[str, ...]) -> tuple[subprocess.Popen, str]:
    port = free_port_block(1)
    folder.mkdir()
    command = [
        *(sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ServerApp.allow_root=True"),
        *(f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={folder}", *extra),
    ]
    log = open(folder.parent / f"{folder.name}.log", "wb")  # noqa: SIM115 - the server's own copy
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}api/status", params={"token": TOKEN}, timeout=5).ok:
                return server, url
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise AssertionError(f"jupyter server did not answer: {(folder.parent / f'{folder.name}.log').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("busy")
    started = {"af": _start(root / "af", EXTRA_ARGUMENTS), "stock": _start(root / "stock", ())}
    yield {name: url for name, (_, url) in started.items()}
    for server, _ in started.values():
        server.terminate()
        server.wait(timeout=30)


def last_activity(url: str) -> datetime:
    status = requests.get(f"{url}api/status", params={"token": TOKEN}, timeout=10).json()
    return datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00"))


def busy(url: str) -> bool:
    """Whether the server's kernel runs the cell; a request that does not count as activity itself."""
    params = {"token": TOKEN, "no_track_activity": "1"}
    kernels = requests.get(f"{url}api/kernels", params=params, timeout=10).json()
    return any(k["execution_state"] == "busy" for k in kernels)


def test_a_busy_kernel_moves_the_servers_last_activity_only_with_the_extension(servers) -> None:
    outputs: dict[str, str] = {}

    def run(name: str) -> None:
        outputs[name] = execute_in_kernel(servers[name], TOKEN, CELL, timeout=90)

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in servers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not all(busy(url) for url in servers.values()):
        assert time.monotonic() < deadline, "the kernels did not start the cell within 60 s"
        time.sleep(0.5)
    time.sleep(2)  # the cell's last messages (busy, execute_input) are behind us
    before = {name: last_activity(url) for name, url in servers.items()}
    time.sleep(3 * CHECK_SECONDS)
    after = {name: last_activity(url) for name, url in servers.items()}
    for thread in threads:
        thread.join(timeout=90)
    assert outputs == {"af": "done\n", "stock": "done\n"}
    moved = {name: (after[name] - before[name]).total_seconds() for name in servers}
    assert moved["af"] >= 2 * CHECK_SECONDS, moved
    assert moved["stock"] == 0, moved  # what the culler saw before: an idle server
