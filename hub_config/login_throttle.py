"""Failed-login counting for the hub: too many failures for a key (a user, an address) lock it briefly."""

from __future__ import annotations

import math
import time
from collections import deque


class Throttle:
    """At most `max_failures` failures per key within `window` seconds; then the key waits `lockout`
    seconds after its latest failure. Kept in the hub's memory: a hub restart forgets it."""

    def __init__(self, max_failures: int, window: float, lockout: float):
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def wait(self, key: str) -> int:
        """Whole seconds `key` must wait before its next attempt; 0 when it may try now."""
        now = time.monotonic()
        times = self._recent(key, now)
        if len(times) < self.max_failures:
            return 0
        return max(0, math.ceil(times[-1] + self.lockout - now))

    def failed(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
