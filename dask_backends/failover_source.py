"""uproot's XRootDSource that opens and reads on the next location when a server stops answering.

dask_backends.failover keeps which servers are down and where a file can be read next; this module
only adds the retries to uproot's source (separate so that importing dask_backends needs no uproot).
"""

from __future__ import annotations

import contextlib
import queue
from typing import Any
from urllib.parse import urlsplit

import uproot

from dask_backends.failover import (
    FAILOVER_TIMEOUT_S,
    is_down,
    mark_down,
    mark_up,
    route,
    server_of,
    tune_client,
    was_down,
)

CLOSE_TIMEOUT_S = 1


def _is_missing(error: BaseException) -> bool:
    return isinstance(error, FileNotFoundError)


class QuickCloseResource(uproot.source.xrootd.XRootDResource):
    """uproot's XRootD resource that, after an error, closes its file without waiting the request
    timeout for it: a hung server would hold the failover that long a second time."""

    def _xrd_error(self, status: Any) -> None:
        timeout, self._timeout = self._timeout, CLOSE_TIMEOUT_S
        try:
            super()._xrd_error(status)
        finally:
            self._timeout = timeout


class FailoverXRootDSource(uproot.source.xrootd.XRootDSource):
    """uproot's XRootDSource that opens and reads on the next location when a server fails."""

    ResourceClass = QuickCloseResource

    def __init__(self, file_path: str, **options: Any) -> None:
        tune_client()
        parts = urlsplit(file_path)
        self._lake_path = "/" + parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        self._route = route(server_of(file_path))
        self._requested_timeout = options.get("timeout")
        # Start on the first location not known to be down (the last one is always tried).
        self._location = next((i for i, s in enumerate(self._route[:-1]) if not is_down(s)), len(self._route) - 1)
        self._set_location(self._location)
        super().__init__(self._file_path, **{**options, "timeout": self._timeout})

    def _set_location(self, index: int) -> None:
        self._location = index
        self._file_path = f"{self._route[index]}/{self._lake_path}"
        self._timeout = self._requested_timeout
        if index < len(self._route) - 1:  # somewhere left to go: do not wait long on this one
            self._timeout = min(self._timeout or FAILOVER_TIMEOUT_S, FAILOVER_TIMEOUT_S)

    def _open_here(self) -> None:
        # XRootDSource._open, with ResourceClass where uproot names XRootDResource itself.
        xrootd = uproot.source.xrootd
        self._resource = self.ResourceClass(self._file_path, self._timeout)
        resources = [xrootd.trivial_resource() for _ in range(self._num_workers if self._use_threads else 1)]
        if self._use_threads:
            self._executor = uproot.source.futures.ResourceThreadPoolExecutor(resources)
        else:
            self._executor = uproot.source.futures.ResourceTrivialExecutor(resources[0])
        self._max_num_elements, self._max_element_size = xrootd.get_server_config(self._resource.file)
        if self._desired_max_num_elements is not None:
            self._max_num_elements = min(self._max_num_elements, self._desired_max_num_elements)

    def _open(self) -> None:
        while True:
            try:
                self._open_here()
            except OSError as error:
                self._next_location(error)
                continue
            if was_down(self._route[self._location]):  # a server that was down answers again
                mark_up(self._route[self._location])
            return

    def _next_location(self, error: OSError) -> None:
        """Mark the current server down and move to the next location; re-raise on the last one."""
        if _is_missing(error) or self._location >= len(self._route) - 1:
            raise error
        server = self._route[self._location]
        mark_down(server, str(error).split(" in file ")[0], self._route[self._location + 1])
        resource = getattr(self, "_resource", None)
        if resource is not None:
            with contextlib.suppress(Exception):  # the server is gone; closing is courtesy
                resource.file.close(timeout=CLOSE_TIMEOUT_S)
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown()
        self._set_location(self._location + 1)

    def chunk(self, start: int, stop: int) -> uproot.source.chunk.Chunk:
        while True:
            try:
                return super().chunk(start, stop)
            except OSError as error:
                self._next_location(error)
                self._open()

    def chunks(self, ranges: list[tuple[int, int]], notifications: queue.Queue) -> list[uproot.source.chunk.Chunk]:
        # uproot's vector reads fill their chunks asynchronously; wait for all of them here, so a
        # failed read is repeated on the next location before anyone sees the chunks.
        while True:
            own: queue.Queue = queue.Queue()
            try:
                chunks = super().chunks(ranges, own)
                for chunk in chunks:
                    chunk.wait()
            except OSError as error:
                self._next_location(error)
                self._open()
                continue
            for chunk in chunks:
                notifications.put(chunk)
            return chunks

    @property
    def num_bytes(self) -> int:
        while self._num_bytes is None:
            try:
                self._num_bytes = self._resource.num_bytes
            except OSError as error:
                self._next_location(error)
                self._open()
        return self._num_bytes
