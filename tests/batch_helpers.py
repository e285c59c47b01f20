"""Helpers shared by the batch-backend tests (tests/test_slurm.py, tests/test_htcondor.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import HubSession


def spawn_form(backend: str, queue: str, /, **overrides: str) -> dict[str, str]:
    """The spawn form's fields for a small notebook server on `backend`; `overrides` replace any."""
    fields = {
        "backend": backend,
        "image": "coffea-2026",
        "cores": "1",
        "memory_gb": "1",
        "queue": queue,
        "walltime_hours": "1",
    }
    return {**fields, **overrides}


def spawn_outcome(session: HubSession, timeout: float = 120) -> dict:
    """Follow the hub's progress stream of a spawn until it is ready or has failed."""
    reply = session.api("GET", f"/users/{session.username}/server/progress", stream=True)
    deadline = time.monotonic() + timeout
    last: dict = {}
    for line in reply.iter_lines(decode_unicode=True):
        if time.monotonic() > deadline:
            break
        if line and line.startswith("data:"):
            last = json.loads(line[5:])
            if last.get("ready") or last.get("failed"):
                break
    reply.close()
    return last


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    """Wait until `check()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def wait_gone(session: HubSession, timeout: float = 30) -> None:
    until(lambda: session.server() is None, f"{session.username}'s server to be gone", timeout)


def write_notebook(path: Path, *cells: str) -> Path:
    """A notebook whose first cell (tagged `parameters`) papermill fills in."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(cell) for cell in cells[1:]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path
