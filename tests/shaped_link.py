"""A data-lake origin at WAN distance: real XRootD servers behind a latency/bandwidth-shaping proxy.

This kernel has no netem/tbf qdiscs, so the link is shaped in user space by Shopify's toxiproxy,
which scripts/bench-install.d/10-toxiproxy.sh builds from its Go module. The XRootD origin and
XCache are started with the facility's own configuration (af.xrootd), as standalone processes so a
benchmark can restart the cache with other settings. Used by tests/test_shaped_link.py and
benchmarks/xcache_sweep.py.

    with XRootDServer.origin(lake_root, port) as origin, ShapedLink(origin.port, api, listen) as link:
        link.shape(rtt_ms=25, rate_mbit=1000)
        with XRootDServer.cache(cache_root, port2, origin_url=link.url) as cache: ...
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from af import xrootd
from tests.harness import ROOT

INSTALL_SCRIPT = ROOT / "scripts" / "bench-install.d" / "10-toxiproxy.sh"
TOXIPROXY_VERSION = re.search(r"^VERSION=(\S+)$", INSTALL_SCRIPT.read_text(), re.M).group(1)
PREFIXES = ["/store/"]


def toxiproxy_dir() -> Path:
    return Path(os.environ.get("AF_TOXIPROXY_DIR") or f"/var/lib/analysis-facility/toxiproxy-{TOXIPROXY_VERSION}")


def toxiproxy_server() -> Path | None:
    """The toxiproxy-server binary the install script built, or None when it is not built."""
    binary = toxiproxy_dir() / "bin" / "toxiproxy-server"
    return binary if os.access(binary, os.X_OK) else None


def _wait(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


class ShapedLink:
    """A toxiproxy server with one proxy, 127.0.0.1:listen_port -> 127.0.0.1:upstream_port."""

    NAME = "origin"

    def __init__(self, upstream_port: int, api_port: int, listen_port: int, log: Path | None = None) -> None:
        self.upstream_port, self.api_port, self.listen_port = upstream_port, api_port, listen_port
        self.log = log
        self.api = f"http://127.0.0.1:{api_port}"
        self.url = f"root://127.0.0.1:{listen_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.rtt_ms, self.rate_mbit = 0.0, 0.0

    def __enter__(self) -> ShapedLink:
        binary = toxiproxy_server()
        if binary is None:
            raise FileNotFoundError(
                f"toxiproxy-server is not built in {toxiproxy_dir()}: run scripts/bench-install.d/10-toxiproxy.sh"
            )
        with open(self.log or os.devnull, "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(self.api_port)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            self._add_proxy()
        except BaseException:
            self.__exit__()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def _add_proxy(self) -> None:
        _wait(self._answers, f"toxiproxy on port {self.api_port}")
        reply = requests.post(
            f"{self.api}/proxies",
            json={
                "name": self.NAME,
                "listen": f"127.0.0.1:{self.listen_port}",
                "upstream": f"127.0.0.1:{self.upstream_port}",
                "enabled": True,
            },
            timeout=10,
        )
        reply.raise_for_status()

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.api}/version", timeout=1).ok
        except requests.ConnectionError:
            return False

    def shape(self, rtt_ms: float, rate_mbit: float) -> None:
        """Replace the link's toxics: half the round trip each way, the bandwidth on both directions."""
        proxy = f"{self.api}/proxies/{self.NAME}"
        for toxic in requests.get(f"{proxy}/toxics", timeout=10).json():
            requests.delete(f"{proxy}/toxics/{toxic['name']}", timeout=10).raise_for_status()
        for stream in ("upstream", "downstream"):
            toxics = []
            if rate_mbit:  # toxiproxy's rate is in KB/s of 1000 bytes
                toxics.append({"type": "bandwidth", "attributes": {"rate": int(rate_mbit * 1000 / 8)}})
            if rtt_ms:
                toxics.append({"type": "latency", "attributes": {"latency": int(rtt_ms / 2), "jitter": 0}})
            for toxic in toxics:
                body = {**toxic, "name": f"{toxic['type']}_{stream}", "stream": stream, "toxicity": 1.0}
                requests.post(f"{proxy}/toxics", json=body, timeout=10).raise_for_status()
        self.rtt_ms, self.rate_mbit = rtt_ms, rate_mbit

    def set_enabled(self, enabled: bool) -> None:
        """Cut the link (new connections refused, open ones closed) or restore it."""
        reply = requests.post(f"{self.api}/proxies/{self.NAME}", json={"enabled": enabled}, timeout=10)
        reply.raise_for_status()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


class XRootDServer:
    """An XRootD origin or XCache run with af.xrootd's configuration, in the foreground."""

    def __init__(self, name: str, config_text: str, port: int, admin: Path, log: Path) -> None:
        self.name, self.port, self.admin, self.log = name, port, admin, log
        self.url = f"root://127.0.0.1:{port}"
        self.config = admin.parent / f"{name}.cfg"
        self.config.write_text(config_text)
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _folders(work: Path) -> Path:
        admin = work / "admin"
        admin.mkdir(parents=True, exist_ok=True)
        xrootd._hand_over(admin)
        return admin

    @classmethod
    def origin(cls, lake_root: Path, port: int, work: Path) -> XRootDServer:
        admin = cls._folders(work)
        text = xrootd.origin_config({"port": port, "local_root": str(lake_root)}, PREFIXES, admin)
        return cls("origin", text, port, admin, work / "origin.log")

    @classmethod
    def cache(
        cls, cache_root: Path, port: int, origin_url: str, work: Path, tuning: dict[str, str] | None = None
    ) -> XRootDServer:
        admin = cls._folders(work)
        cache_root.mkdir(parents=True, exist_ok=True)
        xrootd._hand_over(cache_root)
        text = xrootd.cache_config({"port": port, "local_root": str(cache_root)}, origin_url, PREFIXES, admin, tuning)
        return cls("cache", text, port, admin, work / "cache.log")

    def __enter__(self) -> XRootDServer:
        from XRootD import client

        binary = shutil.which("xrootd")
        if binary is None:
            raise FileNotFoundError("xrootd is not installed (scripts/install.d/20-xrootd.sh installs it)")
        with open(self.log, "ab") as out:
            argv = [*xrootd._drop_privileges_argv(), binary, "-c", str(self.config), "-n", self.name]
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

        def listens() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"xrootd {self.name} exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        # Only then a client: XRootD's client remembers a refused connection for a while.
        try:
            _wait(listens, f"xrootd {self.name} on port {self.port}")
            status, _ = client.FileSystem(self.url).ping(timeout=10)
            if not status.ok:
                raise RuntimeError(f"xrootd {self.name} on port {self.port} does not answer a ping: {status.message}")
        except BaseException:
            self.__exit__()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def work_folder(name: str) -> Path:
    """A folder for servers' configs, logs and caches that `nobody` can traverse (XRootD runs as it)."""
    folder = Path(tempfile.mkdtemp(prefix=f"af-{name}-"))
    folder.chmod(0o755)
    return folder
