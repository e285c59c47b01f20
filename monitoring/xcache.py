"""Bytes each XCache served from its disk versus fetched from the origin, from XRootD itself.

XRootD 5.5's proxy file cache (pfc) reports, each time a client closes a file, how many bytes were
hits (served from the cache), misses (fetched from the origin) and bypasses, in its "g-stream" of
UDP monitoring packets: a JSON header line and one JSON record per line, e.g.

    {"event":"file_close","lfn":"/store/f.root",...,"b_hit":4194304,"b_miss":0,"b_bypass":0,...}

`af up` adds the `xrootd.mongstream pfc` directive to every XCache it runs, sending to the facility
exporter on loopback (UDP, one port per cache, so a record names its cache); the exporter sums the
records into counters. Bytes of files still open are counted when they are closed.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import defaultdict
from pathlib import Path

from af.xrootd import cache_component_name, config_dir
from facility.runtime import Runtime

log = logging.getLogger(__name__)
SOURCES = {"b_hit": "cache", "b_miss": "origin", "b_bypass": "bypass"}


def gstream_ports(runtime: Runtime) -> dict[str, int]:
    """UDP port per managed cache: the exporter's TCP port number and up (UDP ports are separate)."""
    caches = [name for name, c in sorted((runtime.data).get("caches", {}).items()) if c.get("managed")]
    return {name: runtime.metrics["exporter_port"] + i for i, name in enumerate(caches)}


def add_gstream_directives(runtime: Runtime) -> None:
    """Append the pfc g-stream directive to each managed cache's configuration (af.xrootd wrote it)."""
    flush = max(1, runtime.metrics["scrape_interval_seconds"])
    for name, port in gstream_ports(runtime).items():
        path = Path(config_dir(runtime)) / f"{cache_component_name(name)}.cfg"
        with path.open("a") as cfg:
            cfg.write(
                "# Bytes from cache vs origin, per closed file, for the facility exporter (monitoring/xcache.py)\n"
            )
            cfg.write(f"xrootd.mongstream pfc use flush {flush}s send json 127.0.0.1:{port}\n")


class GStreamCounters:
    """Listens for each cache's g-stream and keeps running byte and file counts."""

    def __init__(self, ports: dict[str, int]):
        self._lock = threading.Lock()
        self.bytes: dict[tuple[str, str], int] = defaultdict(int)
        self.files: dict[str, int] = defaultdict(int)
        for cache, port in ports.items():
            for source in SOURCES.values():
                self.bytes[cache, source] = 0
            self.files[cache] = 0
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            threading.Thread(target=self._listen, args=(cache, sock), name=f"gstream {cache}", daemon=True).start()

    def _listen(self, cache: str, sock: socket.socket) -> None:
        while True:
            datagram = sock.recv(65536)
            try:
                self.add(cache, datagram)
            except Exception:  # one malformed packet must not end the listening
                log.exception("unreadable g-stream packet from %s", cache)

    def add(self, cache: str, datagram: bytes) -> None:
        for line in datagram.decode(errors="replace").splitlines():
            line = line.strip().rstrip("\0")
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("event") != "file_close":
                continue  # the packet's header line and other events
            with self._lock:
                self.files[cache] += 1
                for key, source in SOURCES.items():
                    self.bytes[cache, source] += int(record.get(key) or 0)

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        with self._lock:
            return dict(self.bytes), dict(self.files)
