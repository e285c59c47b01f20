"""dask-gateway's client objects, with finalisers that never wait on their own event-loop thread.

dask-gateway 2026.3.0's ``Gateway.__del__`` and ``GatewayCluster.__del__`` close through
``Gateway.sync``, which waits for the client's event-loop thread. The cyclic garbage collector runs
on whichever thread crosses its threshold, often that loop thread: it then waits for itself, and
every cluster of the kernel hangs for ever (docs/upstream/dask-gateway-gc-deadlock.md).

Finalised on their loop thread, these classes schedule the same close on the loop and return; the
cluster is still shut down when ``shutdown_on_close`` says so. Anywhere else they are upstream's.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable
from typing import Any

from dask_gateway import Gateway, GatewayCluster

log = logging.getLogger(__name__)

# asyncio keeps only weak references to tasks: a close scheduled from a finaliser needs a strong one.
_closing: set[asyncio.Task[None]] = set()


def _on_own_loop(gateway: Gateway) -> bool:
    """True on the thread that runs this gateway's event loop (a finaliser there must not wait)."""
    try:
        loop = gateway.loop.asyncio_loop
    except (RuntimeError, AttributeError):  # loop stopped (closed before), or never made: nobody is on it
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs on this thread
        return False


def _close_later(gateway: SafeGateway, closing: Awaitable[None], what: object) -> None:
    """Run `closing` on the loop (we are on its thread), then release the gateway's loop, as close() does."""

    async def close() -> None:
        try:
            gateway._drop_finalised_session()
            await closing
        except Exception:
            log.warning("closing %s after garbage collection failed", what, exc_info=True)
        finally:
            # LoopRunner.stop joins the loop thread when this was the loop's last user, and joining
            # oneself is an error: release it from a thread of its own.
            threading.Thread(target=gateway._loop_runner.stop, name="gateway-release", daemon=True).start()

    log.info("%s was garbage-collected on its event-loop thread: closing it there without waiting", what)
    task = asyncio.get_running_loop().create_task(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


class SafeGateway(Gateway):
    """``dask_gateway.Gateway`` whose finaliser never blocks its loop thread; its clusters are safe too."""

    # Set on a cluster's own gateway: the cluster's finaliser closes it, after shutting the cluster
    # down (this one's close, run first, would close the session the shutdown request needs).
    _closed_by_cluster = False

    def __del__(self) -> None:
        runner = getattr(self, "_loop_runner", None)
        if runner is not None and not self._asynchronous and not runner.is_started():
            return  # closed before: upstream's second close() fails on the stopped loop ("Exception ignored")
        if sys.is_finalizing() or getattr(self, "_asynchronous", True) or not _on_own_loop(self):
            super().__del__()
        elif not self._closed_by_cluster and self._loop_runner.is_started():  # not closed before
            _close_later(self, self._cleanup(), self)

    def _drop_finalised_session(self) -> None:
        # The collection that finalised us finalised our aiohttp session too, which closed its
        # connector: a cluster's shutdown request would fail ("Session is closed"). Upstream's
        # _request makes a new session when there is none.
        if self._session is not None and self._session.closed:
            self._session = None

    def _same_server(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "proxy_address": self.proxy_address,
            "public_address": self._public_address,
            "auth": self.auth,
            "asynchronous": self.asynchronous,
            "loop": self.loop,
        }

    # Upstream builds plain GatewayClusters here (through the module-global name): build ours.
    def connect(self, cluster_name: str, shutdown_on_close: bool = False) -> SafeGatewayCluster:
        return SafeGatewayCluster.from_name(cluster_name, shutdown_on_close=shutdown_on_close, **self._same_server())

    def new_cluster(
        self, cluster_options: Any = None, shutdown_on_close: bool = True, **kwargs: Any
    ) -> SafeGatewayCluster:
        return SafeGatewayCluster(
            cluster_options=cluster_options, shutdown_on_close=shutdown_on_close, **self._same_server(), **kwargs
        )


class SafeGatewayCluster(GatewayCluster):
    """``dask_gateway.GatewayCluster`` whose finaliser never blocks its loop thread."""

    def _init_internal(self, **kwargs: Any) -> None:
        try:
            super()._init_internal(**kwargs)
        finally:
            # Upstream made a plain Gateway (module-global name), which the same collection would
            # finalise and block on: make it ours before anything (a failed start too) can drop it.
            gateway = getattr(self, "gateway", None)
            if type(gateway) is Gateway:
                gateway.__class__ = SafeGateway
            if isinstance(gateway, SafeGateway):
                gateway._closed_by_cluster = True

    def __del__(self) -> None:
        gateway = getattr(self, "gateway", None)
        safe = isinstance(gateway, SafeGateway)  # ours since _init_internal, unless replaced by hand
        if not safe or sys.is_finalizing() or gateway.asynchronous or not _on_own_loop(gateway):
            super().__del__()
        elif self.status != "closed":
            # upstream's close(): stop (shutting down if shutdown_on_close), then close the gateway
            _close_later(gateway, self._stop_internal(), self)
        elif gateway._loop_runner.is_started():
            # stopped by a failed start, its gateway still open: upstream's gateway finaliser closes it
            _close_later(gateway, gateway._cleanup(), self)
