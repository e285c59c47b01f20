"""Reads that move from a cache that stops answering to the next location (another cache, the origin).

Two parts, both process-wide (a notebook kernel, a Dask worker):

- the XRootD client's own knobs, tuned so a dead server is noticed at once: its defaults retry a
  refused connection 5 times in 120 s windows and check timeouts every 15 s, so a stopped XCache
  hung a run for 423 s and a 3 s probe took 15 s (issue 15). An explicit $XRD_* variable wins;
- `FailoverXRootDSource` (dask_backends/failover_source.py), uproot's XRootDSource with one
  addition: when opening or reading on a server fails for any reason but a missing file, the
  server is marked down (one warning per process), and the same path is opened and the same byte
  ranges read on the next location.
  The bytes are the same file's (the lake never rewrites a name, af.data), so results are identical.

Where the next location is: the routes that `DataLake` registers (cache, then origin), else
$AF_DATA_CACHE and $AF_DATA_ORIGIN, which the gateways set for Dask workers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from facility.data_environment import ENV_CACHE, ENV_ORIGIN

log = logging.getLogger("dask_backends.data")

# XrdCl settings (name without XRD_, value). One connection attempt in a 3 s window: a refused
# connection fails at once, a silent host after 3 s. Timeouts checked every second, not every 15.
# A failed host is refused for 10 s (default 1800), so a restarted cache is used again soon.
CLIENT_SETTINGS = {
    "ConnectionWindow": 3,
    "ConnectionRetry": 1,
    "TimeoutResolution": 1,
    "StreamErrorWindow": 10,
}
# Per request while another location is left to go to: a cache that holds a request longer than
# this (hung, not stopped) is left; on the last location uproot's/coffea's own timeout applies.
FAILOVER_TIMEOUT_S = 10
# How long a server that failed is skipped before it is tried again.
DOWN_MEMORY_S = 60.0

_lock = threading.Lock()
_tuned = False
_routes: dict[str, tuple[str, ...]] = {}
_down: dict[str, float] = {}
_warnings = 0


def tune_client() -> None:
    """Apply CLIENT_SETTINGS to this process's XRootD client, except where $XRD_<NAME> is set.

    Before the first request to a server: the client's channel to a host keeps the settings it was
    made with (a channel made with the defaults still retried for 120 s after tuning, measured)."""
    global _tuned
    if _tuned:
        return
    from XRootD import client

    for name, value in CLIENT_SETTINGS.items():
        if f"XRD_{name.upper()}" not in os.environ:
            client.EnvPutInt(name, value)
    _tuned = True


def server_of(url: str) -> str:
    parts = urlsplit(url)
    return f"root://{parts.netloc}"


def register_route(servers: Sequence[str | None]) -> None:
    """Servers in the order to try them (caches, then the origin): each falls back to those after it."""
    chain = tuple(s for s in servers if s)
    with _lock:
        for index, server in enumerate(chain):
            _routes[server] = chain[index:]


def route(server: str) -> tuple[str, ...]:
    """Where a file of `server` can be read, in order: registered, else from $AF_DATA_CACHE/ORIGIN."""
    with _lock:
        known = _routes.get(server)
    if known:
        return known
    cache, origin = os.environ.get(ENV_CACHE), os.environ.get(ENV_ORIGIN)
    if cache and origin and server_of(cache) == server:
        return (server, server_of(origin))
    return (server,)


def is_down(server: str) -> bool:
    with _lock:
        since = _down.get(server)
    return since is not None and time.monotonic() - since < DOWN_MEMORY_S


def mark_down(server: str, reason: str, fallback: str) -> None:
    """Remember a server as down; the first time in an outage, one warning saying where reads go."""
    global _warnings
    with _lock:
        already = server in _down
        _down[server] = time.monotonic()
        if not already:
            _warnings += 1
    if not already:
        log.warning(
            "XCache %s does not answer (%s); reading from %s instead until it answers again (one warning per run)",
            server,
            reason,
            fallback,
        )


def was_down(server: str) -> bool:
    """Whether a server is remembered as down, however long ago."""
    with _lock:
        return server in _down


def mark_up(server: str) -> None:
    with _lock:
        _down.pop(server, None)


def warnings_issued() -> int:
    """How many failover warnings this process gave (tests count them on Dask workers)."""
    return _warnings


def forget() -> None:
    """Forget which servers were down (a new run in the same process; tests)."""
    with _lock:
        _down.clear()
