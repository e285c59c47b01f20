"""A MemoryError in a kernel of a local server names the server's limit (issue 18), in a real kernel;
so does a kernel started again after the memory limit's OOM killer stopped its predecessor.

The kernel is started as the local spawner starts it: $MEM_LIMIT from the form and $PYTHONSTARTUP
pointing to backends/local/kernel_startup.py. The cell lowers its own RLIMIT_DATA, as the spawner
does for the whole server, and asks for more.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from backends.local.memory_message import CGROUP_VARIABLE, limit_words, oom_kills
from backends.local.spawner import KERNEL_STARTUP

pytestmark = pytest.mark.no_facility

HALF_GIB = 512 * 1024**2
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
OVER_THE_LIMIT = (
    "import resource\n"
    f"resource.setrlimit(resource.RLIMIT_DATA, ({HALF_GIB}, resource.getrlimit(resource.RLIMIT_DATA)[1]))\n"
    "block = bytearray(1024**3)"
)


def _kernel(env: dict[str, str]) -> Iterator[BlockingKernelClient]:
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, **env}, startup_timeout=60)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def limited_kernel() -> Iterator[BlockingKernelClient]:
    yield from _kernel({"MEM_LIMIT": str(HALF_GIB), "PYTHONSTARTUP": str(KERNEL_STARTUP)})


@pytest.fixture(scope="module")
def unlimited_kernel() -> Iterator[BlockingKernelClient]:
    environment = {"PYTHONSTARTUP": str(KERNEL_STARTUP)}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MEM_LIMIT", raising=False)
        yield from _kernel(environment)


def _run(client: BlockingKernelClient, code: str) -> tuple[str, str]:
    """The cell's stdout and its error as the notebook shows it (traceback lines, no colours)."""
    stdout, error = [], ""

    def collect(msg: dict) -> None:
        nonlocal error
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            error = ANSI_ESCAPE.sub("", "\n".join(msg["content"]["traceback"]))

    client.execute_interactive(code, output_hook=collect, timeout=60)
    return "".join(stdout), error


def test_a_memory_error_names_the_limit_and_the_ways_out(limited_kernel) -> None:
    _, error = _run(limited_kernel, OVER_THE_LIMIT)
    assert "MemoryError: this notebook server may use at most 0.5 GB of memory" in error, error
    assert "start it with more memory" in error
    assert _run(limited_kernel, "print('alive')")[0].strip() == "alive"


def test_an_own_message_comes_first(limited_kernel) -> None:
    _, error = _run(limited_kernel, "raise MemoryError('cache full')")
    assert "MemoryError: cache full (this notebook server may use at most 0.5 GB" in error, error


def test_other_errors_are_untouched(limited_kernel) -> None:
    _, error = _run(limited_kernel, "1 / 0")
    assert "ZeroDivisionError: division by zero" in error and "at most" not in error, error


def test_the_startup_file_leaves_no_name_behind(limited_kernel) -> None:
    stdout, _ = _run(limited_kernel, "print(sorted(n for n in dir() if 'memory' in n.lower()))")
    assert stdout.strip() == "[]"


def test_without_a_limit_the_error_is_python_s_own(unlimited_kernel) -> None:
    _, error = _run(unlimited_kernel, "raise MemoryError('plain')")
    assert error.rstrip().endswith("MemoryError: plain"), error


def _streams(client: BlockingKernelClient, code: str) -> dict[str, str]:
    """The cell's stdout and stderr."""
    seen: dict[str, str] = {"stdout": "", "stderr": ""}

    def collect(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            seen[msg["content"]["name"]] += msg["content"]["text"]

    client.execute_interactive(code, output_hook=collect, timeout=60)
    return seen


def _set_kills(cgroup: Path, kills: int) -> None:
    (cgroup / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")


def test_a_kernel_stopped_by_the_memory_limit_says_so_when_it_starts_again(tmp_path: Path) -> None:
    """The cgroup is a folder of this test (its count of OOM kills written by hand); the kernel is
    killed as the OOM killer kills (SIGKILL) and started again by its manager, as Jupyter Server's
    restarter does."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    _set_kills(cgroup, 0)
    env = {"MEM_LIMIT": str(HALF_GIB), "PYTHONSTARTUP": str(KERNEL_STARTUP), CGROUP_VARIABLE: str(cgroup)}
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, **env}, startup_timeout=60)
    try:
        assert _streams(client, "print('first')") == {"stdout": "first\n", "stderr": ""}

        _set_kills(cgroup, 1)  # the OOM killer stopped a process of the server: this kernel
        manager.restart_kernel(now=True)  # SIGKILL, then the same kernel started again
        client.stop_channels()
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        seen = _streams(client, "print('after')")
        assert seen["stdout"] == "after\n"
        assert seen["stderr"].startswith(
            "Your kernel was stopped and started afresh: this notebook server may use at most 0.5 GB of memory"
        ), seen
        assert "start it with more memory" in seen["stderr"]
        assert _streams(client, "print('again')")["stderr"] == ""  # said once

        _set_kills(cgroup, 2)  # another process killed; this kernel restarted by the user: not it
        manager.restart_kernel(now=False)
        client.stop_channels()
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        assert _streams(client, "print('restarted')") == {"stdout": "restarted\n", "stderr": ""}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_oom_kills_read_from_cgroup_v1_and_v2(tmp_path: Path) -> None:
    assert oom_kills(None) is None and oom_kills(str(tmp_path)) is None
    _set_kills(tmp_path, 3)
    assert oom_kills(str(tmp_path)) == 3
    (tmp_path / "memory.oom_control").unlink()
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n")
    assert oom_kills(str(tmp_path)) == 2


@pytest.mark.parametrize(
    ("raw", "words"),
    [("1073741824", "1 GB"), ("536870912", "0.5 GB"), ("3221225472", "3 GB"), ("0", None), ("", None), ("1G", None)],
)
def test_limit_words(raw: str, words: str | None) -> None:
    assert limit_words(raw) == words


@pytest.mark.parametrize(
    ("exit_code", "before", "after", "by_limit"),
    [
        (-9, 3, 4, True),  # SIGKILL and one more OOM kill counted: the memory limit
        (-9, 3, 3, False),  # SIGKILL with no OOM kill: killed by someone else (kill -9)
        (1, 3, 4, False),  # a kernel that exited (os._exit(1)) while a subprocess was stopped
        (-11, 3, 4, False),  # a crash
        (-9, None, 4, False),  # no count when the kernel started: cannot tell
        (None, 3, 4, False),  # no process seen
    ],
)
def test_a_kernel_stop_by_the_memory_limit(
    exit_code: int | None, before: int | None, after: int, by_limit: bool
) -> None:
    """The server extension's reading (af_dask_lab.kernel_stops) of how a kernel ended; against a real
    server and a real OOM kill in tests/test_memory_limit.py."""
    kernel_stops = pytest.importorskip("af_dask_lab.kernel_stops", reason="installed by 60-lab-extension.sh")
    stop = kernel_stops.Stop(exit_code, before, after)
    assert stop.by_memory_limit is by_limit
    said = kernel_stops.answer(stop, {"MEM_LIMIT": str(1024**3)})
    assert said["memory_limit"] is by_limit and said["limit"] == "1 GB"
    assert ("may use at most 1 GB of memory" in said.get("message", "")) is by_limit
    assert kernel_stops.answer(stop, {})["memory_limit"] is False  # a server without a limit says nothing
