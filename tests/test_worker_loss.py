"""`kill -9` of a Dask worker in the middle of an analysis (issue 15): the run finishes and its
histograms are bitwise those of an undisturbed run.

The real facility (`af up`): alice's notebook server runs the ttbar analysis (analyses.ttbar, coffea's
DaskExecutor) on a two-worker cluster of the local backend's dask-gateway, over the data lake's
samples through the XCache. In the second run, the worker that reaches one chosen chunk writes its
pid and waits; this test sends that process SIGKILL from outside, as an operator or the kernel's OOM
killer would. The scheduler gives the lost chunk to the other worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.harness import RunningFacility, execute_in_kernel, scope_account_prefix

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)

CHUNK = 8_000  # the samples `af up` writes (2 x 50 k events, 2 files each): 16 chunks

ANALYSIS = """
import os, time, warnings
from dataclasses import dataclass
import numpy as np
from coffea import processor
from dask_backends import new_cluster
from dask_backends.data import DataLake
from analyses import ttbar
warnings.simplefilter("ignore")

MARKER, AT = {marker!r}, {at}

class WaitToBeKilled:
    # Wraps coffea's work function (pickled by value: defined in the kernel). The first worker to
    # reach the chosen chunk writes its pid and waits for the test's SIGKILL; a retry goes on.
    def __init__(self, function, chunk):
        self.function, self.chunk = function, chunk
    def __call__(self, item):
        work = item[0] if isinstance(item, tuple) else item
        if (work.filename, work.entrystart) == self.chunk:
            try:
                fd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                time.sleep(300)
        return self.function(item)

@dataclass
class KillOneWorker(processor.DaskExecutor):
    def __call__(self, items, function, accumulator):
        items = list(items)
        first = items[0][0] if items and isinstance(items[0], tuple) else (items[0] if items else None)
        if hasattr(first, "entrystart"):  # the chunks (not coffea's preprocessing)
            print("CHUNKS", len(items))
            chosen = items[min(AT, len(items) - 1)]
            chosen = chosen[0] if isinstance(chosen, tuple) else chosen
            function = WaitToBeKilled(function, (chosen.filename, chosen.entrystart))
        return super().__call__(items, function, accumulator)

lake = DataLake.from_environment()
fileset = lake.fileset(["ttbar", "wjets"])
cluster = new_cluster("local", workers=2, worker_cores=1, worker_memory_gb=2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=180)
reference = ttbar.run(fileset, processor.DaskExecutor(client=client, status=False), chunksize={chunk})
output = ttbar.run(fileset, KillOneWorker(client=client, status=False), chunksize={chunk})
values = [(o["hist"].values(flow=True), o["hist"].variances(flow=True)) for o in (reference, output)]
print("EVENTS", reference["events"], output["events"])
print("CUTFLOW_EQUAL", reference["cutflow"] == output["cutflow"])
print("BITWISE", all(np.array_equal(a, b) for a, b in zip(values[0], values[1])))
print("FILLED", reference["hist"].sum().value > 0)
cluster.close()
"""


def _kill_when_marked(marker: Path, killed: dict[str, int | str], stop: threading.Event) -> None:
    """SIGKILL the worker whose pid appears in `marker`."""
    while not stop.is_set():
        try:
            pid = int(marker.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.2)
            continue
        proc = psutil.Process(pid)
        killed["pid"], killed["user"] = pid, proc.username()
        os.kill(pid, signal.SIGKILL)
        return


def test_worker_killed_mid_analysis_gives_identical_histograms(embedded: RunningFacility) -> None:
    alice = embedded.login("alice")
    reply = alice.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = alice.wait_ready()
    marker = Path("/tmp") / f"af-worker-loss-{uuid.uuid4().hex}.pid"
    killed: dict[str, int | str] = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_marked, args=(marker, killed, stop), daemon=True)
    killer.start()
    code = ANALYSIS.format(marker=str(marker), at=6, chunk=CHUNK)
    try:
        out = execute_in_kernel(f"{alice.url}{server['url']}", alice.token(), code, timeout=900)
    finally:
        stop.set()
        marker.unlink(missing_ok=True)
        alice.stop_server()
    assert killed, f"no worker reached the chosen chunk:\n{out}"
    assert killed["user"] == f"{scope_account_prefix()}alice", killed  # a process of alice's cluster (her Unix account)
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    chunks = int(out.split("CHUNKS ")[1].split()[0])
    assert chunks >= 12, out
    # Every event, as many as the run without a kill (the samples' size depends on what earlier
    # tests generated into the shared facility: 100 k fresh).
    reference_events, events = (int(n) for n in out.split("EVENTS ")[1].split()[:2])
    assert events == reference_events >= 100_000, out
    assert "CUTFLOW_EQUAL True" in out and "FILLED True" in out, out
    # coffea's DaskExecutor reduces the chunks' outputs in a fixed tree over the chunk list, whatever
    # worker computed each: the retried chunk changes nothing, to the last bit.
    assert "BITWISE True" in out, out
