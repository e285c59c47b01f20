"""A server start that runs out of time says so in words.

The hub gives a spawn `start_timeout` seconds, then cancels it and fails it with a bare
TimeoutError; the spawn page shows only messages marked for users (jupyterhub.utils.format_exception),
so the user read "Spawn failed: " and nothing more. The facility's spawner gives up a little
earlier itself, with what the backend said last (KubeSpawner's pod events, e.g. no node fits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

# Seconds before the hub's own deadline: ours must fire first, also on a busy hub.
MARGIN_S = 2.0


class StartTimedOut(RuntimeError):
    """A start past its deadline; `jupyterhub_message` is what the spawn page shows."""


def last_words(child: Any) -> str:
    """What the backend said last about this start: KubeSpawner keeps its pod's events (`events`)."""
    events = getattr(child, "events", None)
    if not isinstance(events, list) or not events:
        return ""
    return str(events[-1].get("message") or "").strip()


def deadline(start_timeout: float) -> float:
    return max(start_timeout - MARGIN_S, start_timeout * 0.9)


async def within(starting: Awaitable[Any], start_timeout: float, where: str, child: Any) -> Any:
    """`starting`'s result, or StartTimedOut in words shortly before the hub would give up."""
    seconds = deadline(start_timeout)
    try:
        return await asyncio.wait_for(starting, seconds)
    except TimeoutError:
        said = last_words(child)
        reason = f" The last thing it reported: {said}" if said else ""
        message = (
            f"Your server on {where} did not start within {start_timeout:.0f} seconds, so it was stopped.{reason} "
            "Try again, or choose a smaller size or another place to run."
        )
        error = StartTimedOut(message)
        error.jupyterhub_message = message
        raise error from None
