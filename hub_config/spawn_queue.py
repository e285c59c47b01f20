"""A first-come line for notebook servers that start on the hub's own host.

JupyterHub's own `concurrent_spawn_limit` answers 429 "Too many users trying to log in right now"
to every spawn over the limit. Here a spawn over `hub.spawn.concurrent` (facility.yaml) waits its
turn instead, before the hub's start timeout runs, and the spawn page says how many others are
ahead. JupyterHub's limit stays as the outer bound (concurrent + queue_limit, set in
jupyterhub_config.py). Only local servers queue: batch and Kubernetes backends have their own
schedulers, and a job waiting there must not hold a slot on this host.

A slot is held from the turn until the hub no longer counts the spawn as pending (server up and
in the proxy, or the spawn failed and was cleaned up): a local server costs CPU until it answers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from backends.registry import kind_of
from facility.model import Facility

log = logging.getLogger("JupyterHub")

# How often a slot holder checks whether its spawn is still pending, and how often the spawn
# page's queue message is refreshed.
POLL_SECONDS = 0.5
REPEAT_SECONDS = 15


class SpawnQueue:
    """At most `limit` spawns hold a slot; the others wait in arrival order."""

    def __init__(self, limit: int):
        self.limit = limit
        self._holders: set[int] = set()
        self._waiting: OrderedDict[int, asyncio.Future[None]] = OrderedDict()
        self._tickets = itertools.count()

    def ahead_of(self, ticket: int) -> int | None:
        """How many spawns start before this one (all slot holders and those ahead in line); None
        once it holds a slot or is gone."""
        if ticket not in self._waiting:
            return None
        return len(self._holders) + list(self._waiting).index(ticket)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def take(self) -> tuple[int, asyncio.Future[None] | None]:
        """A ticket, and None if it holds a slot at once, else a future that resolves at its turn."""
        ticket = next(self._tickets)
        if len(self._holders) < self.limit and not self._waiting:
            self._holders.add(ticket)
            return ticket, None
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = turn
        return ticket, turn

    async def wait(self, ticket: int, turn: asyncio.Future[None]) -> None:
        try:
            await turn
        except BaseException:
            # The spawn was cancelled (user stopped it, hub shutting down) while in line or just as
            # its turn came: give the slot on.
            if self._waiting.pop(ticket, None) is None:
                self.release(ticket)
            raise

    def release(self, ticket: int) -> None:
        self._holders.discard(ticket)
        self._waiting.pop(ticket, None)
        self._admit()

    def set_limit(self, limit: int) -> None:
        """facility.yaml changed (reload policy): a larger limit lets the next ones in at once."""
        self.limit = limit
        self._admit()

    def _admit(self) -> None:
        while self._waiting and len(self._holders) < self.limit:
            ticket, turn = self._waiting.popitem(last=False)
            if turn.done():  # cancelled meanwhile
                continue
            self._holders.add(ticket)
            turn.set_result(None)


_queue: SpawnQueue | None = None


def hub_queue(limit: int) -> SpawnQueue:
    """The hub process's one queue (every FacilitySpawner shares it), at the current limit."""
    global _queue
    if _queue is None:
        _queue = SpawnQueue(limit)
    elif _queue.limit != limit:
        _queue.set_limit(limit)
    return _queue


def queues(fac: Facility, backend_name: str) -> bool:
    """Whether a server of this backend starts on the hub's host, and so waits its turn."""
    kind = kind_of(fac.backend(backend_name))
    return kind.runs_on_this_host and not kind.is_batch


class QueuedSpawn:
    """One spawn's place in the queue: wait for the turn, report the place, free the slot when
    the spawn is over. `still_pending` says whether the hub still counts the spawn as pending."""

    def __init__(self, queue: SpawnQueue, still_pending: Callable[[], bool]):
        self.queue = queue
        self.still_pending = still_pending
        self.ticket: int | None = None
        self.queued_at = time.monotonic()
        self._watch: asyncio.Task[None] | None = None

    def enter(self) -> Awaitable[None] | None:
        """Take a place: None when the spawn may start at once, else something to await for the turn.

        Nothing is awaited when a slot is free, so the hub still answers a refused request at once
        (its slow_spawn_timeout is 0) and a free machine starts a server without a detour.
        """
        self.ticket, turn = self.queue.take()
        if turn is None:
            self._watch = asyncio.ensure_future(self._release_when_done())
            return None
        log.info("Spawn queued: %d ahead, %d starting at a time", self.ahead(), self.queue.limit)
        return self._wait(self.ticket, turn)

    async def _wait(self, ticket: int, turn: asyncio.Future[None]) -> None:
        await self.queue.wait(ticket, turn)
        self._watch = asyncio.ensure_future(self._release_when_done())

    async def _release_when_done(self) -> None:
        try:
            while self.still_pending():
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self.release()

    def release(self) -> None:
        if self.ticket is not None:
            self.queue.release(self.ticket)
            self.ticket = None

    def ahead(self) -> int | None:
        return None if self.ticket is None else self.queue.ahead_of(self.ticket)

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Spawn-page events while this spawn waits in line; ends when its turn comes."""
        said: tuple[int, int] | None = None
        while (ahead := self.ahead()) is not None:
            waited = int(time.monotonic() - self.queued_at)
            # The page adds every event to its log: a new line when the count moves, or every 15 s.
            if said is None or ahead != said[0] or waited - said[1] >= REPEAT_SECONDS:
                yield {"progress": 5, "message": waiting_message(ahead, self.queue.limit, waited)}
                said = (ahead, waited)
            await asyncio.sleep(POLL_SECONDS)


def waiting_message(ahead: int, limit: int, waited: int) -> str:
    """The spawn page's line for a queued spawn, in plain words."""
    others = "1 other server" if ahead == 1 else f"{ahead} other servers"
    return (
        f"Many people are starting servers right now. Waiting for {others} to start first; "
        f"this machine starts {limit} at a time, yours starts automatically ({waited} s so far)."
    )
