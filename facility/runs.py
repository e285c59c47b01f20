"""Runs of `af run` under way, for the ledger: one small file per run while its process lives.

`af run` writes `<state folder>/runs/<user>/<pid>.json` (backend, size, the process's start time)
before it submits anything and removes it when the run ends. A file counts only while that process
still runs (same pid and start time), so a run killed without cleaning up stops counting at once,
and a restart of the hub or a gateway neither loses nor doubles a run. The batch runners wait for
their job to end (and cancel it when interrupted), so the process lives as long as the job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from facility.quota import RUN, Holding

FOLDER = "runs"


def runs_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / FOLDER


def _user_dir(folder: Path, user: str) -> Path:
    if not user or "/" in user or user.startswith("."):
        raise ValueError(f"{user!r} is not a user name")
    return folder / user


def _alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1
    except (psutil.Error, ValueError):
        return False


def running(folder: Path, user: str, but_pid: int | None = None) -> list[Holding]:
    """The user's runs whose process still runs (except that of `but_pid`: a run asking about the others)."""
    held = []
    for path in sorted(_user_dir(folder, user).glob("*.json")):
        try:
            run = json.loads(path.read_text())
            if int(run["pid"]) != but_pid and _alive(int(run["pid"]), float(run["started"])):
                held.append(
                    Holding(RUN, run["backend"], run["name"], run["cores"], run["memory_gb"], run.get("gpus", 0))
                )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed while read, or not a run's file
    return held


def running_all(folder: Path) -> dict[str, list[Holding]]:
    """Every user's runs whose process still runs: user -> runs (users without any left out)."""
    if not folder.is_dir():
        return {}
    users = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {user: held for user in users if (held := running(folder, user))}


@contextmanager
def recorded(folder: Path, user: str, run: Holding) -> Iterator[Path]:
    """Count `run` as the user's while the block runs (this process's run)."""
    me = psutil.Process()
    mine = _user_dir(folder, user)
    mine.mkdir(parents=True, exist_ok=True)
    path = mine / f"{me.pid}.json"
    entry = {
        "pid": me.pid,
        "started": me.create_time(),
        "backend": run.backend,
        "name": run.name,
        "cores": run.cores,
        "memory_gb": run.memory_gb,
        "gpus": run.gpus,
    }
    path.write_text(json.dumps(entry))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
