"""Each spawn failure once in the hub's log.

JupyterHub logs a failed start where it happens (`User.spawn`: "Unhandled error starting alice's
server: ...", with the traceback), then again from request handlers: "Error starting server
alice: ..." when the start failed within the spawn request, and "Previous spawn for alice failed:
..." at every view of the spawn page afterwards. The copies add no information and make one failure
look like several; this filter on the hub's log handler drops them once `User.spawn` has logged that
failure.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

# The handlers' messages that repeat a failure User.spawn has already logged (jupyterhub/handlers/pages.py).
REPEATS = ("Previous spawn for ", "Error starting server ")
# User.spawn's own messages for a failed start (jupyterhub/user.py), one per kind of failure.
ORIGINALS = ("Unhandled error starting ", "Error starting ", "Not starting ")


class SpawnFailureOnce(logging.Filter):
    def __init__(self, remembered: int = 200) -> None:
        super().__init__()
        self._seen: deque[str] = deque(maxlen=remembered)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        message = record.getMessage()
        if record.module == "user" and message.startswith(ORIGINALS):
            self._seen.append(message.split(": ", 1)[-1])
            return True
        if record.module == "pages" and message.startswith(REPEATS):
            failure = message.split(": ", 1)[-1]
            return failure not in self._seen
        return True


def logging_config() -> dict[str, Any]:
    """The filter on the hub's console handler, for `c.JupyterHub.logging_config` (traitlets merges it
    into its dictConfig). On the handler, not on the "JupyterHub" logger: User.spawn logs through
    tornado's app_log, which only propagates to that logger, and a logger's filters see only its own
    records."""
    return {
        "filters": {"spawn_failure_once": {"()": f"{__name__}.SpawnFailureOnce"}},
        "handlers": {"console": {"filters": ["spawn_failure_once"]}},
    }
