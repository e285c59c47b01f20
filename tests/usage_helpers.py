"""Reading a running facility's usage record (facility.usage) in tests: what one user has been
counted so far, and when the sampler took its samples, to compare with held × elapsed."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator

import requests

from facility.cluster_lifetime import ALL_CLUSTERS_PATH
from facility.usage import CAP_INTERVALS, UsageStore, usage_path
from tests.harness import RunningFacility

Amounts = dict[str, tuple[float, float, float]]  # kind -> core, memory GB, GPU seconds


def running_workers(running: RunningFacility, user: str) -> int:
    """The running workers of the user's clusters, as the gateway tells the usage sampler."""
    gw = running.runtime["gateways"]["local"]
    reply = requests.get(
        f"{gw['url']}{ALL_CLUSTERS_PATH}", headers={"Authorization": f"Bearer {gw['api_token']}"}, timeout=10
    )
    reply.raise_for_status()
    return sum(c["running_workers"] for c in reply.json()["users"].get(user, []))


def recorded(running: RunningFacility, user: str) -> tuple[float, Amounts]:
    """The last sample's time and the user's recorded seconds per kind, read between two samples
    (the time read before and after the rows agrees)."""
    store = UsageStore(usage_path(running.state_dir))
    while True:
        last = store.last_sample()
        kinds: Amounts = {}
        for row in store.rows(users={user}):
            before = kinds.get(row.kind, (0.0, 0.0, 0.0))
            kinds[row.kind] = (
                before[0] + row.core_seconds,
                before[1] + row.memory_gb_seconds,
                before[2] + row.gpu_seconds,
            )
        if store.last_sample() == last and last is not None:
            return last, kinds
        time.sleep(0.1)


@contextlib.contextmanager
def sample_times(running: RunningFacility) -> Iterator[list[float]]:
    """The time of every sample recorded while the block runs (the store is read every 0.1 s, far
    more often than samples come), the last one before the block first."""
    store = UsageStore(usage_path(running.state_dir))
    times = [store.last_sample()]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            last = store.last_sample()
            if last != times[-1]:
                times.append(last)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield times
    finally:
        done.set()
        watcher.join()
        # the watcher may sleep through the block's last sample, which the block itself has read
        if (last := store.last_sample()) != times[-1]:
            times.append(last)


def between(times: list[float], first: float, last: float) -> list[float]:
    """The sample times from `first` to `last`, both of which the watcher saw."""
    window = [t for t in times if first <= t <= last]
    assert window[0] == first and window[-1] == last, (times, first, last)
    return window


def counted(times: list[float], interval: float) -> float:
    """The seconds the sampler counts over these samples: each step, at most CAP_INTERVALS intervals."""
    return sum(min(b - a, CAP_INTERVALS * interval) for a, b in itertools.pairwise(times))


def grown(before: Amounts, after: Amounts, kind: str) -> tuple[float, float]:
    """(core, memory GB) seconds recorded for `kind` between two readings."""
    old = before.get(kind, (0.0, 0.0, 0.0))
    new = after.get(kind, (0.0, 0.0, 0.0))
    return new[0] - old[0], new[1] - old[1]
