"""Runs of `af run` under way, for the ledger: one small file per run while its process lives.

`af run` writes `<state folder>/runs/<user>/<pid>.json` (backend, size, the process's start time)
before it submits anything and removes it when the run ends. A file counts only while that process
still runs (same pid and start time), so a run killed without cleaning up stops counting at once,
and a restart of the hub or a gateway neither loses nor doubles a run. The batch runners wait for
their job to end (and cancel it when interrupted), so the process lives as long as the job.

`af run` in a notebook server runs as the user's own account, which cannot write here; the hub
records it for them (hub_config/run_admission.py) as `<state folder>/runs/<user>/h-<id>.json`, with a
lease the client renews while it runs and releases when done. Such a record counts while its lease
holds and, when the hub saw the client's process on its own host (`pid_checked`), while that
process lives: a killed run there stops counting at once, one elsewhere when its lease lapses.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from facility.model import Backend, Facility
from facility.quota import RUN, Holding
from facility.validation import validate_spawn

FOLDER = "runs"
LEASED = re.compile(r"h-[0-9a-f]{16}")  # the ids of records the hub writes (never a pid)
# A run's name (its folder's) is shown in messages and logs and written into records: words,
# digits and a few plain marks, nothing a shell or a path would read (; $ ` | & < > quotes / \ ...).
RUN_NAME = re.compile(r"\w[\w.+@=, -]{0,99}")


def check_run_name(name: str) -> str:
    """`name` if it is a plain run name; ValueError saying what one may hold otherwise."""
    if not RUN_NAME.fullmatch(name) or name.endswith(" "):
        raise ValueError(
            f"run name {name!r} may hold only letters, digits, spaces and . _ - + @ = , "
            "(at most 100 characters, starting with a letter, digit or _)"
        )
    return name


def run_holding(fac: Facility, backend: Backend, name: str) -> Holding:
    """The run's size: the backend's default server size, which the batch runners ask the scheduler for."""
    size = validate_spawn(fac, {"backend": backend.name}, set(), is_admin=True)
    return Holding(RUN, backend.name, name, float(size.cores), float(size.memory_gb), float(size.gpus or 0))


@dataclass(frozen=True)
class Client:
    """The process of an `af run` as it names itself: pid, start time and host."""

    pid: int
    started: float
    host: str


def process_started(pid: int) -> float | None:
    """When process `pid` of this host started (its create time); None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


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


def _counts(run: dict[str, Any]) -> bool:
    """A record counts while its lease (if any) holds and its process (unless unseen by the hub) lives."""
    lease = run.get("lease_until")
    if lease is not None and float(lease) < time.time():
        return False
    return not run.get("pid_checked", True) or _alive(int(run["pid"]), float(run["started"]))


def running(folder: Path, user: str, but: str | None = None) -> list[Holding]:
    """The user's runs still under way (except record `but`: a run asking about the others)."""
    held = []
    for path in sorted(_user_dir(folder, user).glob("*.json")):
        try:
            run = json.loads(path.read_text())
            if path.stem != but and _counts(run):
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


def _entry(run: Holding, pid: int, started: float) -> dict[str, Any]:
    return {
        "pid": pid,
        "started": started,
        "backend": run.backend,
        "name": run.name,
        "cores": run.cores,
        "memory_gb": run.memory_gb,
        "gpus": run.gpus,
    }


def _write(path: Path, entry: dict[str, Any]) -> None:
    """Replace the record at once: a reader sees the old one or the new one, never half of one."""
    tmp = path.with_name(f".{path.stem}.tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)


def record_leased(
    folder: Path, user: str, run: Holding, client: Client, pid_checked: bool, lease_seconds: float
) -> str:
    """Record `run` of `client` as the user's for `lease_seconds` (the hub, for a run it admits); its id.

    `pid_checked`: the client's process is one of this host's, so the record also ends with it."""
    mine = _user_dir(folder, user)
    mine.mkdir(parents=True, exist_ok=True)
    run_id = f"h-{secrets.token_hex(8)}"
    entry = {
        **_entry(run, client.pid, client.started),
        "host": client.host,
        "pid_checked": pid_checked,
        "lease_until": time.time() + lease_seconds,
    }
    _write(mine / f"{run_id}.json", entry)
    return run_id


def _leased(folder: Path, user: str, run_id: str) -> Path | None:
    path = _user_dir(folder, user) / f"{run_id}.json"
    return path if LEASED.fullmatch(run_id) and path.is_file() else None


def renew(folder: Path, user: str, run_id: str, lease_seconds: float) -> bool:
    """Extend the lease of the user's record `run_id` to `lease_seconds` from now; False if it has none
    (never recorded, released, or no longer counting: a lapsed lease is not revived)."""
    path = _leased(folder, user, run_id)
    try:
        entry = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return False
    if not isinstance(entry, dict) or not _counts(entry):
        return False
    _write(path, {**entry, "lease_until": time.time() + lease_seconds})  # type: ignore[arg-type]
    return True


def release(folder: Path, user: str, run_id: str) -> bool:
    """Remove the user's record `run_id` (the run ended); False if there was none."""
    path = _leased(folder, user, run_id)
    if path is None:
        return False
    path.unlink(missing_ok=True)
    return True


def sweep(folder: Path, user: str) -> None:
    """Remove the user's hub-written records that no longer count (lapsed leases, ended processes)."""
    for path in _user_dir(folder, user).glob("h-*.json"):
        try:
            if not _counts(json.loads(path.read_text())):
                path.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue


@contextmanager
def recorded(folder: Path, user: str, run: Holding) -> Iterator[Path]:
    """Count `run` as the user's while the block runs (this process's run)."""
    me = psutil.Process()
    mine = _user_dir(folder, user)
    mine.mkdir(parents=True, exist_ok=True)
    path = mine / f"{me.pid}.json"
    path.write_text(json.dumps(_entry(run, me.pid, me.create_time())))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
