"""Reading JupyterHub's progress stream of a spawn (/hub/api/users/<name>/server/progress).

The hub answers 400 "is not starting" in two short gaps: before it counts a spawn as started (the
spawn form redirects after 1 s), and while it stops a server that failed to start (User.stop
clears the pending flag before the failed spawn's future is done, and the facility's post-stop
hook asks the gateways to stop clusters meanwhile). A browser's EventSource asks again; so do
these helpers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

NOT_STARTING = "is not starting"


def progress_stream(get: Callable[[], requests.Response], started_within: float = 30) -> requests.Response:
    """`get()` (a streamed GET of the progress URL) until the hub stops answering "is not starting",
    or `started_within` seconds have passed: the last answer."""
    deadline = time.monotonic() + started_within
    while True:
        reply = get()
        if reply.status_code != 400 or NOT_STARTING not in reply.text or time.monotonic() > deadline:
            return reply
        reply.close()
        time.sleep(0.5)


def final_event(stream: requests.Response, timeout: float) -> dict[str, Any]:
    """The stream's events read until one says ready or failed (or `timeout` passes): the last."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    for line in stream.iter_lines(decode_unicode=True):
        if time.monotonic() > deadline:
            break
        if line and line.startswith("data:"):
            last = json.loads(line[5:])
            if last.get("ready") or last.get("failed"):
                break
    stream.close()
    return last
