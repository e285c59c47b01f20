"""Read the data lake through the backend's XCache, the same way in notebooks and on Dask workers.

    from dask_backends.data import DataLake
    lake = DataLake.from_environment()
    fileset = lake.fileset(["ttbar", "wjets"], n_files=2)   # coffea fileset, URLs through the cache
    tree = lake.open(lake.files("ttbar")[0]["path"])["Events"]   # /store/af/generated/ttbar/<generation>/...
    fileset = lake.fileset(["af:ttbar"])   # a dataset by Rucio DID (facility.yaml data.rucio)

Where the lake and cache are comes from $AF_DATA_ORIGIN, $AF_DATA_CACHE and $AF_DATA_PREFIXES,
which the hub sets for notebooks, the gateways for Dask workers and `af run` for its kernels (from
the running facility's runtime.json, else from facility.yaml). When the cache does not answer, reads
go to the origin and one warning per run says so; a cache that stops answering in the middle of a
run is left for the origin chunk by chunk (dask_backends.failover), on Dask workers too.

A name with a colon is a Rucio DID (scope:name): its files and replicas come from the facility's
Rucio server (dask_backends.rucio_dids; the server and account from runtime.json on the facility's
host), the replica on this lake's origin is chosen and read through the cache like any other path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dask_backends import failover, rucio_dids
from facility.data_environment import ENV_CACHE, ENV_ORIGIN, ENV_PREFIXES
from facility.runtime import ENV_RUNTIME, FILE_NAME, RuntimeFileError, default_state_dir, read_runtime

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CATALOGUE_PATH = "/store/af/catalogue.json"
TREE_NAME = "Events"
PROBE_TIMEOUT_S = 3
STAT_TIMEOUT_S = 15
PROBE_MEMORY_S = 30.0  # how long a probe's answer is trusted, so a file list does not ping per file

log = logging.getLogger(__name__)


class DataLakeError(RuntimeError):
    """The data lake cannot be reached or does not hold what was asked for."""


class UnknownDataset(DataLakeError, KeyError):
    """A sample name that the catalogue does not list."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataFileNotFound(DataLakeError, FileNotFoundError):
    """A path that does not exist in the data lake."""


def _server(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "root" or not parts.hostname:
        raise ValueError(f"{url!r} is not an XRootD server address (root://host:port)")
    return f"root://{parts.netloc}"


def uproot_options() -> dict[str, Any]:
    """uproot.open options for the lake's root:// URLs (notebooks, workers, coffea's uproot_options).

    uproot's own XRootD source: its fsspec route fails on the first read (xrootd 6.2 client). Its
    vector reads (a chunk's baskets in one request) beat the multithreaded source's one request per
    range over a 25 ms link (0.93x), and fewer ranges per vector read gained nothing
    (benchmarks/uproot_reads.py); larger chunks and coffea's preloading are what count there. Its
    subclass FailoverXRootDSource moves to the origin when the cache stops answering.
    """
    from dask_backends.failover_source import FailoverXRootDSource

    failover.tune_client()
    return {"handler": FailoverXRootDSource}


def through_local_cache(url: str) -> bool:
    """Whether a root:// URL is read through a cache on this machine: a loopback server with another
    location (the origin) behind it in its failover route (DataLake registers it; on Dask workers
    $AF_DATA_CACHE and $AF_DATA_ORIGIN say it). Every request to it costs well under a millisecond,
    whatever the distance to the origin: XCache opens and stats a file it holds without asking the
    origin (benchmarks/xcache_sweep.py --warm-check)."""
    parts = urlsplit(str(url))
    if parts.scheme != "root" or parts.hostname not in LOOPBACK_HOSTS:
        return False
    return len(failover.route(failover.server_of(str(url)))) > 1


def _xrootd_client() -> Any:
    try:
        from XRootD import client
    except ImportError as exc:  # the analysis extra is not installed
        raise DataLakeError("the XRootD Python client is missing: pip install 'analysis-facility[analysis]'") from exc
    failover.tune_client()
    return client


@dataclass
class DataLake:
    """The data lake's origin, the cache in front of it, and how to turn paths into URLs."""

    origin: str
    cache: str | None = None
    prefixes: tuple[str, ...] = ("/store/",)
    rucio: rucio_dids.RucioServer | None = None  # where DIDs (scope:name) are resolved
    _probes: dict[str, tuple[float, bool]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.origin = _server(self.origin)
        self.cache = _server(self.cache) if self.cache else None
        failover.register_route([self.cache, self.origin])  # where reads go when the cache stops answering
        with contextlib.suppress(ImportError):  # before any connection: channels keep the settings they start with
            failover.tune_client()

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> DataLake:
        env = os.environ if environ is None else environ
        origin = env.get(ENV_ORIGIN)
        rucio = None
        if not origin:
            origin, cache, prefixes, rucio = _from_runtime_file(env)
        else:
            cache = env.get(ENV_CACHE) or None
            prefixes = tuple(p for p in env.get(ENV_PREFIXES, "/store/").split(":") if p)
        return cls(origin=origin, cache=cache, prefixes=prefixes or ("/store/",), rucio=rucio)

    # --- paths and URLs -------------------------------------------------------------------------

    def path_of(self, path_or_url: str) -> str:
        """The path inside the lake of '/store/...' or of a URL on the origin or the cache."""
        if path_or_url.startswith("root://"):
            parts = urlsplit(path_or_url)
            if f"root://{parts.netloc}" not in (self.origin, self.cache):
                raise DataLakeError(f"{path_or_url} is not in this facility's data lake ({self.origin})")
            path = "/" + parts.path.lstrip("/")
        else:
            path = path_or_url
        if not path.startswith("/"):
            raise DataLakeError(f"{path_or_url!r} is not a data-lake path; they start with / (e.g. /store/...)")
        if self.prefixes and not any(path.startswith(p) for p in self.prefixes):
            raise DataLakeError(f"{path} is outside the data lake's prefixes ({', '.join(self.prefixes)})")
        return path

    def answers(self, server: str) -> bool:
        """Whether an XRootD server answers a ping within PROBE_TIMEOUT_S (remembered for a short while)."""
        now = time.monotonic()
        known = self._probes.get(server)
        if known and now - known[0] < PROBE_MEMORY_S:
            return known[1]
        if failover.is_down(server):  # failed a moment ago in this process: no new probe
            return False
        client = _xrootd_client()
        status, _ = client.FileSystem(server).ping(timeout=PROBE_TIMEOUT_S)
        self._probes[server] = (now, bool(status.ok))
        if status.ok:
            failover.mark_up(server)
        return bool(status.ok)

    def server(self, use_cache: bool = True) -> str:
        """The cache when asked for and it answers; else the origin (one warning per run if the cache is down)."""
        if use_cache and self.cache:
            if self.answers(self.cache):
                return self.cache
            failover.mark_down(self.cache, "no answer to a ping", self.origin)
        return self.origin

    def url(self, path_or_url: str, use_cache: bool = True) -> str:
        return f"{self.server(use_cache)}/{self.path_of(path_or_url)}"

    # --- reading --------------------------------------------------------------------------------

    def stat(self, path_or_url: str, use_cache: bool = True) -> int:
        """Size in bytes of a file in the lake; DataFileNotFound if it is not there."""
        path = self.path_of(path_or_url)
        server = self.server(use_cache)
        status, info = _xrootd_client().FileSystem(server).stat(path, timeout=STAT_TIMEOUT_S)
        if not status.ok and server == self.cache and not _not_found(status):
            # The cache answered a ping a moment ago but fails now: remember it as down, use the origin.
            failover.mark_down(server, status.message.strip(), self.origin)
            self._probes[server] = (time.monotonic(), False)
            server = self.origin
            status, info = _xrootd_client().FileSystem(server).stat(path, timeout=STAT_TIMEOUT_S)
        if not status.ok:
            if _not_found(status):
                raise DataFileNotFound(f"no file {path} in the data lake ({server}): {status.message.strip()}")
            raise DataLakeError(f"cannot reach {path} on {server}: {status.message.strip()}")
        return int(info.size)

    def read_bytes(self, path_or_url: str, use_cache: bool = True) -> bytes:
        path = self.path_of(path_or_url)
        server = self.server(use_cache)
        with _xrootd_client().File() as handle:
            status, _ = handle.open(f"{server}/{path}", timeout=30)
            if not status.ok:
                if _not_found(status):
                    raise DataFileNotFound(f"no file {path} in the data lake ({server}): {status.message.strip()}")
                raise DataLakeError(f"cannot open {path} on {server}: {status.message.strip()}")
            status, data = handle.read(timeout=60)
            if not status.ok:
                raise DataLakeError(f"cannot read {path} on {server}: {status.message.strip()}")
        return data

    def open(self, path_or_url: str, use_cache: bool = True, **options: Any) -> Any:
        """uproot.open of a lake file through the cache (falling back to the origin)."""
        import uproot

        self.stat(path_or_url, use_cache)  # a clear DataFileNotFound before uproot's own errors
        options = {**uproot_options(), **options}
        return uproot.open(self.url(path_or_url, use_cache), **options)  # stat left a failed cache marked down

    # --- the dataset catalogue --------------------------------------------------------------------

    def catalogue(self, use_cache: bool = False) -> dict[str, Any]:
        """The catalogue `af data` keeps at /store/af/catalogue.json (read from the origin: it changes)."""
        try:
            return json.loads(self.read_bytes(CATALOGUE_PATH, use_cache))
        except DataFileNotFound:
            raise DataFileNotFound(
                f"the data lake at {self.origin} has no dataset catalogue ({CATALOGUE_PATH}); "
                "create one with `af data generate` (or `af data import-samples`)"
            ) from None

    def files(self, sample: str, n_files: int | None = None) -> list[dict[str, Any]]:
        """A dataset's files, [{path, bytes, ...}]: a sample of the catalogue, or a Rucio DID (scope:name)."""
        if ":" in sample:
            entries = self.files_of_did(sample)
            return entries if n_files is None else entries[: max(int(n_files), 0)]
        samples = self.catalogue().get("samples", {})
        if sample not in samples:
            known = ", ".join(sorted(samples)) or "none"
            raise UnknownDataset(f"no dataset named {sample!r} in the data lake's catalogue; known datasets: {known}")
        entries = samples[sample]["files"]
        return entries if n_files is None else entries[: max(int(n_files), 0)]

    def files_of_did(self, did: str) -> list[dict[str, Any]]:
        """The files of a Rucio DID with a replica on this lake's origin: [{path, bytes, adler32, did}].

        DataLakeError for a malformed DID, an unknown one, a Rucio server that does not answer, or
        files with no replica on this origin; UnknownDataset for an unknown DID.
        """
        try:
            rucio_dids.parse_did(did)
        except rucio_dids.MalformedDid as exc:
            raise DataLakeError(str(exc)) from None
        if self.rucio is None:
            raise DataLakeError(
                f"{did!r} names a Rucio dataset, but this data lake has no Rucio server "
                "(facility.yaml data.rucio; DataLake.from_environment finds it on the facility's host)"
            )
        try:
            found = rucio_dids.replicas(self.rucio, did)
        except rucio_dids.UnknownDid as exc:
            raise UnknownDataset(str(exc)) from None
        except rucio_dids.RucioLookupError as exc:
            raise DataLakeError(str(exc)) from None
        entries = []
        for replica in found:
            pfns = [pfn for urls in replica["pfns"].values() for pfn in urls]
            ours = [pfn for pfn in pfns if pfn.startswith(f"{self.origin}/")]
            if not ours:
                where = ", ".join(sorted(replica["pfns"])) or "no RSE"
                raise DataLakeError(
                    f"{replica['scope']}:{replica['name']} of {did} has no replica on this facility's origin "
                    f"{self.origin} (replicas on: {where})"
                )
            entry = {"path": self.path_of(ours[0]), "bytes": replica["bytes"], "adler32": replica["adler32"]}
            entries.append({**entry, "did": f"{replica['scope']}:{replica['name']}"})
        return entries

    def fileset(
        self, samples: list[str] | tuple[str, ...], n_files: int | None = None, use_cache: bool = True
    ) -> dict[str, Any]:
        """A coffea fileset: sample -> {files: {url: tree}, metadata}; URLs through the cache. A sample
        may be a Rucio DID (scope:name): its process is the DID's name; it carries no cross section yet,
        so its events count 1 each (analyses.normalisation) and the genWeight sums come from its files."""
        by_did = [s for s in samples if ":" in s]
        catalogue = self.catalogue().get("samples", {}) if len(by_did) < len(samples) else {}
        catalogue.update({did: {"tree": TREE_NAME, "did": did} for did in by_did})
        result = {}
        for sample in samples:
            entries = self.files(sample, n_files)
            meta = {k: v for k, v in catalogue[sample].items() if k != "files"}
            if ":" in sample:
                meta.setdefault("process", sample.partition(":")[2])
            # Counts and weight sums of the files chosen (n_files), so a partial sample is normalised right.
            for key in ("events", "genWeight_sum", "genWeight_sign_sum"):
                if all(key in e for e in entries):
                    meta[key] = sum(e[key] for e in entries)
            result[sample] = {
                "files": {self.url(e["path"], use_cache): catalogue[sample].get("tree", TREE_NAME) for e in entries},
                "metadata": {"sample": sample, **meta},
            }
        return result


def _not_found(status: Any) -> bool:
    return status.errno == 3011 or "No such file" in status.message  # kXR_NotFound


def _from_runtime_file(
    env: Mapping[str, str],
) -> tuple[str, str | None, tuple[str, ...], rucio_dids.RucioServer | None]:
    """Outside the hub and without $AF_DATA_*: the facility running on this host (runtime.json)."""
    path = env.get(ENV_RUNTIME)
    if not path:
        path = str(default_state_dir() / FILE_NAME)
    if not Path(path).exists():
        raise DataLakeError(
            f"${ENV_ORIGIN} is not set and no facility runs here ({path} is missing): start one with `af up`, "
            "or set $AF_DATA_ORIGIN (and $AF_DATA_CACHE) to root://host:port"
        )
    try:
        data = read_runtime(path).data
    except RuntimeFileError as exc:
        raise DataLakeError(str(exc)) from None
    if not data:
        raise DataLakeError(f"the facility of {path} has no data lake (facility.yaml has no `data` section)")
    caches = data.get("caches", {})
    # Outside any backend: the first cache of facility.yaml, which the embedded facility runs.
    cache = next(iter(caches.values()), {}).get("url")
    rucio = rucio_dids.RucioServer.from_runtime(data["rucio"]) if data.get("rucio") else None
    return data["origin"]["url"], cache, tuple(data.get("prefixes") or ()), rucio
