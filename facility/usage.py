"""Usage accounting: core-, memory- and GPU-seconds per user, backend and kind of use, per UTC day.

The usage sampler (monitoring/usage_sampler.py) reads what every user holds now, from the sources
of the quotas' ledger (facility.ledger), and hands it to `UsageStore.record`: what is held now
counts for the time since the last recorded sample, at most CAP_INTERVALS sampling intervals. Time
nobody sampled (the sampler was down, or a component did not answer) is not made up beyond that.

The store is one SQLite file in the state folder, 0600. A sample's amounts and its time are written
in one transaction (SQLite's own lock serialises writers), so a restart of the sampler, the hub or a
gateway loses nothing recorded, and no stretch of time is counted twice, even by two samplers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from facility.quota import Holding

FILE_NAME = "usage.sqlite"
CAP_INTERVALS = 2  # a step counts at most this many sampling intervals
BUSY_TIMEOUT_S = 30  # how long a reader or writer waits for the other's transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    user TEXT NOT NULL,
    backend TEXT NOT NULL,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    core_seconds REAL NOT NULL,
    memory_gb_seconds REAL NOT NULL,
    gpu_seconds REAL NOT NULL,
    PRIMARY KEY (day, user, backend, kind)
);
CREATE TABLE IF NOT EXISTS sampler (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
ADD = """
INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, user, backend, kind) DO UPDATE SET
    groups = excluded.groups,
    core_seconds = core_seconds + excluded.core_seconds,
    memory_gb_seconds = memory_gb_seconds + excluded.memory_gb_seconds,
    gpu_seconds = gpu_seconds + excluded.gpu_seconds
"""
LAST_SAMPLE = "last_sample"


class UsageUnavailable(RuntimeError):
    """No usage can be read (no file yet); the message says why, for a person."""


@dataclass(frozen=True)
class UserHoldings:
    """What one user holds at a sample, and their groups then (usage by group counts them)."""

    groups: tuple[str, ...]
    held: tuple[Holding, ...]


@dataclass(frozen=True)
class UsageRow:
    """One user's use of one backend for one kind of use (server, cluster, run) on one UTC day."""

    day: str
    user: str
    backend: str
    kind: str
    groups: tuple[str, ...]
    core_seconds: float
    memory_gb_seconds: float
    gpu_seconds: float


def usage_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / FILE_NAME


def counted_seconds(last: float | None, now: float, interval: float) -> float:
    """How long the holdings seen `now` count for: since the last sample, at most CAP_INTERVALS
    intervals; nothing for a first sample or a clock that went back."""
    if last is None or now <= last:
        return 0.0
    return min(now - last, CAP_INTERVALS * interval)


def day_spans(start: float, end: float) -> list[tuple[str, float]]:
    """[start, end] (Unix times) cut at UTC midnights: (YYYY-MM-DD, seconds of it in that day)."""
    spans = []
    while end > start:
        day = dt.datetime.fromtimestamp(start, dt.UTC).date()
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
        stop = min(end, midnight)
        spans.append((day.isoformat(), stop - start))
        start = stop
    return spans


def held_rates(held: Collection[Holding]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(backend, kind) -> the cores, memory (GB) and GPUs held there together; nothing for empty holdings."""
    rates: dict[tuple[str, str], tuple[float, float, float]] = {}
    for h in held:
        cores, memory, gpus = rates.get((h.backend, h.kind), (0.0, 0.0, 0.0))
        rates[h.backend, h.kind] = (cores + h.cores, memory + h.memory_gb, gpus + h.gpus)
    return {key: rate for key, rate in rates.items() if any(rate)}


class UsageStore:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction, committed when the block ends."""
        if not self.path.exists():  # made 0600 before SQLite opens it; its journal takes the same mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # the write lock before reading the last sample's time
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise UsageUnavailable(f"no usage has been recorded yet ({self.path} does not exist)")
        try:
            with closing(sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)) as db:
                yield db
        except sqlite3.Error as exc:  # e.g. the sampler made the file and has not written its tables yet
            raise UsageUnavailable(f"the usage file {self.path} cannot be read ({exc})") from None

    def record(self, holdings: Mapping[str, UserHoldings], now: float, interval: float) -> float:
        """Add what each user holds `now` for the time since the last sample (at most CAP_INTERVALS
        intervals), and make `now` the last sample; the seconds counted."""
        with self._writing() as db:
            row = db.execute("SELECT value FROM sampler WHERE key = ?", (LAST_SAMPLE,)).fetchone()
            seconds = counted_seconds(row[0] if row else None, now, interval)
            for day, part in day_spans(now - seconds, now):
                for user, mine in holdings.items():
                    groups = json.dumps(sorted(mine.groups))
                    for (backend, kind), (cores, memory, gpus) in held_rates(mine.held).items():
                        db.execute(ADD, (day, user, backend, kind, groups, cores * part, memory * part, gpus * part))
            db.execute("INSERT OR REPLACE INTO sampler VALUES (?, ?)", (LAST_SAMPLE, now))
        return seconds

    def last_sample(self) -> float | None:
        """The Unix time of the last recorded sample; None before the first."""
        with self._reading() as db:
            row = db.execute("SELECT value FROM sampler WHERE key = ?", (LAST_SAMPLE,)).fetchone()
        return row[0] if row else None

    def rows(self, since: str = "", users: Collection[str] | None = None) -> list[UsageRow]:
        """Every row from the day `since` (YYYY-MM-DD; empty: all), of `users` only if given."""
        with self._reading() as db:
            found = db.execute("SELECT * FROM usage WHERE day >= ? ORDER BY day, user, backend, kind", (since,))
            rows = [UsageRow(d, u, b, k, tuple(json.loads(g)), c, m, x) for d, u, b, k, g, c, m, x in found]
        return [r for r in rows if users is None or r.user in users]
