"""Failed-login counting for the hub: too many failures for a key (a user, an address) lock it briefly."""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from pathlib import Path


class Throttle:
    """At most `max_failures` failures per key within `window` seconds; then the key waits `lockout`
    seconds after its latest failure. With a `path` the failure times are kept in that file (0600),
    so a hub restart does not give a guesser a fresh count; without one, in memory only."""

    def __init__(self, max_failures: int, window: float, lockout: float, path: str | Path | None = None):
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.path = Path(path) if path else None
        # Wall-clock times, not monotonic ones: they must mean the same after a restart.
        self._failures: dict[str, deque[float]] = self._load()

    def _load(self) -> dict[str, deque[float]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            saved = json.loads(self.path.read_text())
            failures = {str(key): deque(sorted(float(t) for t in times)) for key, times in saved.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path}: unreadable login failure counts ({exc}); remove the file") from exc
        now = time.time()
        return {key: times for key, times in failures.items() if self._prune(times, now)}

    def _save(self) -> None:
        if self.path is None:
            return
        partial = self.path.with_name(f".{self.path.name}.partial")
        # Private from its creation: it names users and addresses.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({key: list(times) for key, times in self._failures.items()}, out)
        os.replace(partial, self.path)

    def _prune(self, times: deque[float], now: float) -> deque[float]:
        while times and times[0] < now - self.window:
            times.popleft()
        return times

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._prune(self._failures.get(key, deque()), now)
        if not times:
            self._failures.pop(key, None)
        return times

    def wait(self, key: str) -> int:
        """Whole seconds `key` must wait before its next attempt; 0 when it may try now."""
        now = time.time()
        times = self._recent(key, now)
        if len(times) < self.max_failures:
            return 0
        return max(0, math.ceil(times[-1] + self.lockout - now))

    def failed(self, key: str) -> None:
        now = time.time()
        self._failures.setdefault(key, deque()).append(now)
        # Keys whose failures have all left the window go, so memory and file stay small.
        self._failures = {key: times for key, times in self._failures.items() if self._prune(times, now)}
        self._save()

    def succeeded(self, key: str) -> None:
        if self._failures.pop(key, None) is not None:
            self._save()
