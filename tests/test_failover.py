"""The XCache stops in the middle of an analysis: reads move to the origin within seconds, results are
bitwise those of a run from the origin, one warning per run; a new run with the cache down decides
in under 3 s. Real XRootD origin and XCache of the embedded facility (`af up`), stopped and started
through supervisord."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dask_backends import failover
from dask_backends.data import DataLake
from tests.harness import ROOT, RunningFacility
from tests.lake_control import DaskStoppingCache, IterativeStoppingCache, signal_cache, start_cache, stop_cache

SAMPLES = ["ttbar", "wjets"]
EVENTS = 240_000  # per sample, 3 files: 12 chunks of 40 k events in all
CHUNK = 40_000
WARNING = "does not answer"


@pytest.fixture(scope="module")
def lake(embedded: RunningFacility) -> dict[str, Any]:
    embedded.af("data", "generate", "--events", str(EVENTS), "--files", "3", "--seed", "15", timeout=300)
    data = embedded.runtime["data"]
    cache = data["caches"]["local-xcache"]
    return {
        "state_dir": str(embedded.state_dir),
        "cache_port": cache["port"],
        "cache_root": Path(cache["local_root"]),
        "origin": data["origin"]["url"],
        "cache": cache["url"],
    }


def _cache_up(lake: dict[str, Any]) -> None:
    """Start the cache and wait until this process's XRootD client reaches it again (the client
    refuses a host for a few seconds after it failed: failover.CLIENT_SETTINGS)."""
    from XRootD import client as xrootd

    failover.tune_client()  # before this process's first connection to the cache
    start_cache(lake["state_dir"], lake["cache_port"])
    deadline = time.monotonic() + 30
    while not xrootd.FileSystem(lake["cache"]).ping(timeout=2)[0].ok:
        assert time.monotonic() < deadline, "the restarted XCache does not answer this process"
        time.sleep(0.5)
    failover.forget()


@pytest.fixture
def client(lake: dict[str, Any]) -> Any:
    """A DataLake with the cache up and no memory of earlier outages; the cache is up again afterwards."""
    _cache_up(lake)
    yield DataLake(origin=lake["origin"], cache=lake["cache"])
    _cache_up(lake)


def _failover_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


def _same_histograms(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["events"] == b["events"]
    assert np.array_equal(a["hist"].values(flow=True), b["hist"].values(flow=True))
    assert np.array_equal(a["hist"].variances(flow=True), b["hist"].variances(flow=True))
    assert a["cutflow"] == b["cutflow"]


def test_cache_stopped_mid_analysis_fails_over_to_the_origin(
    lake: dict[str, Any], client: DataLake, caplog: pytest.LogCaptureFixture, artifacts: Path
) -> None:
    from analyses import ttbar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        reference = ttbar.run(client.fileset(SAMPLES, use_cache=False), chunksize=CHUNK)
        origin_seconds = time.perf_counter() - started
        fileset = client.fileset(SAMPLES)
        assert all(url.startswith(client.cache) for e in fileset.values() for url in e["files"])
        executor = IterativeStoppingCache(status=False, state_dir=lake["state_dir"], at=5)
        with caplog.at_level(logging.WARNING, logger="dask_backends.data"):
            started = time.perf_counter()
            output = ttbar.run(fileset, executor, chunksize=CHUNK)
            failover_seconds = time.perf_counter() - started
    assert reference["events"] == 2 * EVENTS
    _same_histograms(output, reference)
    # The first chunks were read through the cache (its disk holds the first file), the rest not.
    assert (lake["cache_root"] / client.files("ttbar")[0]["path"].lstrip("/")).exists()
    messages = _failover_warnings(caplog)
    assert len(messages) == 1, messages
    assert client.cache in messages[0] and client.origin in messages[0]
    figures = {"origin_run_s": origin_seconds, "failover_run_s": failover_seconds, "events": 2 * EVENTS}
    (artifacts / "failover_run.json").write_text(json.dumps(figures, indent=2) + "\n")
    # The outage costs seconds, not the 423 s of the XRootD client's default retries.
    assert failover_seconds < origin_seconds + 30, figures


def test_cache_stopped_between_reads_of_an_open_file(
    lake: dict[str, Any], client: DataLake, caplog: pytest.LogCaptureFixture
) -> None:
    path = client.files("wjets")[1]["path"]
    with client.open(path, use_cache=False) as opened:
        expected = opened["Events"].arrays(["Jet_pt", "Muon_pt"], library="np")
    with caplog.at_level(logging.WARNING, logger="dask_backends.data"), client.open(path) as opened:
        assert opened.file.source._file_path.startswith(client.cache)
        jets = opened["Events"]["Jet_pt"].array(library="np")
        stop_cache(lake["state_dir"])
        started = time.monotonic()
        muons = opened["Events"]["Muon_pt"].array(library="np")  # baskets not read yet: from the origin
        seconds = time.monotonic() - started
        assert opened.file.source._file_path.startswith(client.origin)
    assert all(np.array_equal(a, b) for a, b in zip(jets, expected["Jet_pt"], strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(muons, expected["Muon_pt"], strict=True))
    assert len(_failover_warnings(caplog)) == 1
    assert seconds < 3, f"the read moved to the origin after {seconds:.1f} s"


def test_hung_cache_is_left_after_the_failover_timeout(
    lake: dict[str, Any], client: DataLake, caplog: pytest.LogCaptureFixture
) -> None:
    path = client.files("ttbar")[2]["path"]
    with client.open(path, use_cache=False) as opened:
        expected = opened["Events"]["Electron_pt"].array(library="np")
    with caplog.at_level(logging.WARNING, logger="dask_backends.data"), client.open(path) as opened:
        opened["Events"]["Jet_pt"].array(library="np")
        signal_cache(lake["state_dir"], "STOP")  # connections stay open; nothing answers
        try:
            started = time.monotonic()
            electrons = opened["Events"]["Electron_pt"].array(library="np")
            seconds = time.monotonic() - started
        finally:
            signal_cache(lake["state_dir"], "CONT")
        assert opened.file.source._file_path.startswith(client.origin)
    assert all(np.array_equal(a, b) for a, b in zip(electrons, expected, strict=True))
    assert len(_failover_warnings(caplog)) == 1
    assert seconds < failover.FAILOVER_TIMEOUT_S + 5, f"left the hung cache after {seconds:.1f} s"


DECIDE = """
import json, sys, time
from dask_backends.data import DataLake
started = time.perf_counter()
lake = DataLake.from_environment()
server = lake.server()
decided = time.perf_counter() - started
fileset = lake.fileset(["ttbar", "wjets"])
print(json.dumps({"decided_s": decided, "fileset_s": time.perf_counter() - started, "server": server,
                  "urls": [u for e in fileset.values() for u in e["files"]]}))
"""


def test_new_run_with_the_cache_down_decides_in_seconds(
    lake: dict[str, Any], client: DataLake, artifacts: Path
) -> None:
    stop_cache(lake["state_dir"])
    env = {
        **os.environ,
        "AF_DATA_ORIGIN": lake["origin"],
        "AF_DATA_CACHE": lake["cache"],
        "AF_DATA_PREFIXES": "/store/",
    }
    env.pop("XRD_CONNECTIONWINDOW", None)
    result = subprocess.run(
        [sys.executable, "-c", DECIDE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["server"] == lake["origin"]
    assert figures["urls"] and all(url.startswith(lake["origin"]) for url in figures["urls"])
    assert result.stderr.count(WARNING) == 1, result.stderr  # one warning, not one per file
    (artifacts / "failover_decision.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["decided_s"] <= 3, figures  # the client's defaults took 15 s here


def test_cache_stopped_mid_analysis_on_dask_workers(
    lake: dict[str, Any], client: DataLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dask.distributed import Client, LocalCluster

    from analyses import ttbar

    # Workers find the origin the way the gateways' workers do: from $AF_DATA_*.
    monkeypatch.setenv("AF_DATA_ORIGIN", lake["origin"])
    monkeypatch.setenv("AF_DATA_CACHE", lake["cache"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ttbar.run(client.fileset(SAMPLES, use_cache=False), chunksize=CHUNK)
        fileset = client.fileset(SAMPLES)
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
            Client(cluster) as dask_client,
        ):
            executor = DaskStoppingCache(client=dask_client, status=False, state_dir=lake["state_dir"], at=6)
            output = ttbar.run(fileset, executor, chunksize=CHUNK)
            worker_warnings = dask_client.run(failover.warnings_issued)
    # Dask adds the chunks' histograms in its own order: equal up to floating-point summation order.
    assert output["events"] == reference["events"]
    assert np.allclose(output["hist"].values(flow=True), reference["hist"].values(flow=True), rtol=1e-12, atol=0)
    assert np.allclose(output["hist"].variances(flow=True), reference["hist"].variances(flow=True), rtol=1e-12, atol=0)
    assert list(worker_warnings.values()) == [1], worker_warnings  # the one worker warned once
