"""Stop and start the embedded facility's XCache from tests (supervisord's own XML-RPC), and the
coffea executors that stop it in the middle of a run, before a chosen chunk."""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coffea import processor

from af import supervise
from af.runtime import StateDir

CACHE_COMPONENT = "xcache-local-xcache"


def stop_cache(state_dir: str | Path) -> None:
    """Stop the XCache (supervisord sends SIGTERM and waits); already stopped is fine."""
    try:
        supervise.rpc(StateDir(Path(state_dir))).supervisor.stopProcess(CACHE_COMPONENT)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            raise


def signal_cache(state_dir: str | Path, signal: str) -> None:
    """Send the XCache a signal: STOP freezes it with its connections open (a hung server), CONT thaws it."""
    supervise.rpc(StateDir(Path(state_dir))).supervisor.signalProcess(CACHE_COMPONENT, signal)


def start_cache(state_dir: str | Path, port: int, timeout: float = 30) -> None:
    try:
        supervise.rpc(StateDir(Path(state_dir))).supervisor.startProcess(CACHE_COMPONENT)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise
    deadline = time.monotonic() + timeout
    while not supervise.port_open(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"the XCache did not listen on {port} within {timeout} s")
        time.sleep(0.2)


class StopCacheBefore:
    """A coffea work function that stops the cache before processing one chosen chunk (picklable,
    so it runs on a Dask worker as well as in this process)."""

    def __init__(self, function: Any, state_dir: str, chunk: tuple[str, int]) -> None:
        self.function, self.state_dir, self.chunk = function, state_dir, chunk

    def __call__(self, item: Any) -> Any:
        work = item[0] if isinstance(item, tuple) else item  # DaskExecutor: (work item, processor)
        if (work.filename, work.entrystart) == self.chunk:
            stop_cache(self.state_dir)
        return self.function(item)


def _wrapped(items: Any, function: Any, state_dir: str, at: int) -> tuple[list, Any]:
    items = list(items)
    first = items[0][0] if items and isinstance(items[0], tuple) else (items[0] if items else None)
    if not hasattr(first, "entrystart"):  # coffea's preprocessing (file metadata)
        return items, function
    chosen = items[min(at, len(items) - 1)]
    chosen = chosen[0] if isinstance(chosen, tuple) else chosen
    return items, StopCacheBefore(function, state_dir, (chosen.filename, chosen.entrystart))


@dataclass
class IterativeStoppingCache(processor.IterativeExecutor):
    """coffea's IterativeExecutor that stops the XCache before the chunk at index `at`."""

    state_dir: str = ""
    at: int = 3

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        items, function = _wrapped(items, function, self.state_dir, self.at)
        return super().__call__(items, function, accumulator)


@dataclass
class DaskStoppingCache(processor.DaskExecutor):
    """coffea's DaskExecutor whose worker stops the XCache before the chunk at index `at`."""

    state_dir: str = ""
    at: int = 3

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        items, function = _wrapped(items, function, self.state_dir, self.at)
        return super().__call__(items, function, accumulator)
