"""Per-core efficiency of the ttbar analysis on the facility's Dask clusters, against one process.

    .venv/bin/python -m benchmarks.dask_efficiency [--events 2000000] [--files 4]
                                                   [--chunksizes 100000,250000,500000] [--out benchmarks/results]

Starts one real facility (`af up`, local backend), writes generated ttbar NanoAOD files into its
data lake and reads them from the local disk (so the computation, not the I/O, is measured), then
in one run:

  plain      the analysis's selection (`agc`, all systematics) on arrays read by plain uproot, without
             coffea's NanoEvents and Runner, one process (benchmarks.ttbar_plain), largest chunks
  one process  analyses/ttbar.py with coffea's iterative executor (the baseline, per chunk size)
  gateway    the same through coffea's Dask executor on a dask-gateway cluster of the facility's
             local backend (what a user gets), 1 and 2 workers of one core, per chunk size
  distributed default  the same on a distributed.LocalCluster with distributed's own defaults, whose
             nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (the facility drops it:
             backends.common.cluster_options.WORKER_ENVIRONMENT), 1 and 2 workers

Workers import the analysis before the clock starts (a cluster pays that once, not per pass).
Efficiency per core = (events/s / workers) / (events/s of one process at the same chunk size).
Every run must fill the same histograms as one process at its chunk size (the JER smearing draws
one random stream per chunk, so runs at different chunk sizes differ in that variation).
Writes dask_efficiency.json and dask_efficiency.png.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.results_io import RESULTS, write_results
from tests.harness import RunningFacility, embedded_raw, free_port_block, run_af, write_facility

MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
USER = "benchdask"
WORKER_MEMORY_GB = 4  # 500 k-event chunks need more than the 2 GB default


def _quiet(function: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        output = function()
        return output, time.perf_counter() - started


def _measure(name: str, function: Callable[[], dict[str, Any]], workers: int, chunksize: int) -> dict[str, Any]:
    output, wall = _quiet(function)
    result = {
        "workers": workers,
        "chunksize": chunksize,
        "events": output["events"],
        "seconds": wall,
        "events_per_s": output["events"] / wall,
        "events_per_s_per_core": output["events"] / wall / workers,
        # The processor's own compute time summed over chunks (not for plain uproot).
        "compute_seconds": output.get("seconds"),
        "hist": output["hist"],
    }
    print(f"{name:<40} {result['events_per_s_per_core']:>10,.0f} events/s per core ({wall:.1f} s)", flush=True)
    return result


def _fileset(root: Path) -> dict[str, Any]:
    from af.data import read_catalogue

    catalogue = read_catalogue(root)["samples"]
    return {
        sample: {
            "files": {str(root) + f["path"]: entry["tree"] for f in entry["files"]},
            "metadata": {"sample": sample, **{k: v for k, v in entry.items() if k != "files"}},
        }
        for sample, entry in catalogue.items()
    }


def _coffea(fileset: dict[str, Any], chunksize: int, client: Any = None) -> Callable[[], dict[str, Any]]:
    from coffea import processor

    from analyses import ttbar

    executor = processor.DaskExecutor(client=client, status=False) if client is not None else None
    return lambda: ttbar.run(fileset, executor=executor, chunksize=chunksize)


def _prepare_workers(client: Any, workers: int) -> dict[str, str | None]:
    """Wait for the workers, import the analysis on them, and report their malloc setting."""
    import importlib

    client.wait_for_workers(workers, timeout=300)
    client.run(lambda: importlib.import_module("analyses.ttbar") and None)  # a module is not sent back
    # Looked up in each worker: client.run(os.environ.get, ...) would pickle this process's os.environ.
    return dict(client.run(lambda: os.environ.get(MALLOC_VARIABLE)))


@contextlib.contextmanager
def _gateway_cluster(running: RunningFacility, backend: str, workers: int) -> Iterator[tuple[Any, dict[str, Any]]]:
    from dask_gateway import Gateway, JupyterHubAuth

    token = running.login(USER).token()
    gateway = Gateway(address=running.runtime["gateways"][backend]["url"], auth=JupyterHubAuth(api_token=token))
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=WORKER_MEMORY_GB)
    try:
        cluster.scale(workers)
        with cluster.get_client() as client:
            yield client, _prepare_workers(client, workers)
    finally:
        cluster.shutdown()
        gateway.close()


@contextlib.contextmanager
def _default_local_cluster(workers: int) -> Iterator[tuple[Any, dict[str, Any]]]:
    from distributed import Client, LocalCluster

    before = os.environ.get(MALLOC_VARIABLE)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=f"{WORKER_MEMORY_GB}GB",
        dashboard_address=None,
    )
    try:
        with Client(cluster) as client:
            yield client, _prepare_workers(client, workers)
    finally:
        cluster.close()
        # The nanny put the variable into this process's environment (pre-spawn-environ): take it out
        # again, so that nothing started later inherits it.
        if before is None:
            os.environ.pop(MALLOC_VARIABLE, None)


def _same_histograms(results: dict[str, dict[str, Any]]) -> bool:
    """Every run against one process at its chunk size (Dask sums the chunks in another order)."""
    import numpy as np

    def same(result: dict[str, Any]) -> bool:
        reference = results[f"one process, chunks {result['chunksize']}"]["hist"]
        return np.allclose(result["hist"].values(), reference.values(), rtol=1e-9) and np.allclose(
            result["hist"].variances(), reference.variances(), rtol=1e-9
        )

    return all(same(r) for r in results.values())


def _start_facility(root: Path) -> RunningFacility:
    port = free_port_block()
    raw = copy.deepcopy(embedded_raw())
    raw["hub"] = {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}", "start_timeout_seconds": 300}
    running = RunningFacility(root / "state", write_facility(root / "facility.yaml", raw))
    run_af(running.state_dir, "up", "--facility", str(running.facility_file), "--port", str(port), timeout=300)
    return running


def measure(events: int, files: int, chunksizes: list[int]) -> dict[str, Any]:
    from af.data import generate_samples
    from benchmarks import ttbar_plain
    from facility.accounts import remove_account
    from facility.model import UnixAccounts

    results: dict[str, dict[str, Any]] = {}
    malloc: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="af-bench-dask-"))
    # Workers run as the user's own Unix account (per-user mode, the default): the files are in a
    # folder anyone may read, not in the facility's private state folder.
    work.chmod(0o755)
    root = work / "lake"
    running = _start_facility(work)
    try:
        backend = embedded_raw()["backends"][0]["name"]
        generate_samples(root, ("ttbar",), events, files, seed=2026)
        fileset = _fileset(root)
        largest = max(chunksizes)
        results["plain uproot+awkward"] = _measure(
            "plain uproot+awkward, 1 process", lambda: ttbar_plain.run(fileset, chunksize=largest), 1, largest
        )
        for chunksize in chunksizes:
            results[f"one process, chunks {chunksize}"] = _measure(
                f"coffea, 1 process, chunks {chunksize}", _coffea(fileset, chunksize), 1, chunksize
            )
        for workers in (1, 2):
            with _gateway_cluster(running, backend, workers) as (client, seen):
                malloc[f"gateway, {workers} worker(s)"] = seen
                for chunksize in chunksizes:
                    name = f"gateway, {workers} worker(s), chunks {chunksize}"
                    results[name] = _measure(name, _coffea(fileset, chunksize, client), workers, chunksize)
        # Last: the nanny leaks the variable into this process's environment while its cluster runs.
        for workers in (1, 2):
            with _default_local_cluster(workers) as (client, seen):
                malloc[f"distributed default, {workers} worker(s)"] = seen
                name = f"distributed default, {workers} worker(s), chunks {largest}"
                results[name] = _measure(name, _coffea(fileset, largest, client), workers, largest)
    finally:
        run_af(running.state_dir, "down", check=False)
        shutil.rmtree(work, ignore_errors=True)
        remove_account(USER, UnixAccounts())
    same = _same_histograms(results)
    for result in results.values():
        baseline = results[f"one process, chunks {result['chunksize']}"]["events_per_s_per_core"]
        result["efficiency_per_core"] = result["events_per_s_per_core"] / baseline
        result["ratio_to_best_one_process"] = result["events_per_s_per_core"] / max(
            results[f"one process, chunks {c}"]["events_per_s_per_core"] for c in chunksizes
        )
        result.pop("hist")
    return {
        "benchmark": "dask_efficiency",
        "baseline": "one process (coffea iterative executor) at the same chunk size",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "dataset": {"events": events, "files": files, "sample": "ttbar (generated)"},
        "worker_malloc_trim_threshold": malloc,
        "same_histograms_everywhere": same,
        "results": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    chunksizes = sorted({r["chunksize"] for name, r in results.items() if name.startswith("one process")})
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    largest = max(chunksizes)
    names = [n for n, r in results.items() if r["chunksize"] == largest]
    bars = left.barh(names, [results[n]["events_per_s_per_core"] / 1e3 for n in names], color="#1f77b4")
    for bar, name in zip(bars, names, strict=True):
        left.annotate(
            f" {results[name]['efficiency_per_core']:.2f}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
        )
    left.invert_yaxis()
    left.set_xlabel("thousand events / s per core (label: ratio to one process)")
    left.set_title(f"ttbar analysis, chunks of {largest:,} events")
    for prefix, style in (("one process", "o-"), ("gateway, 1 worker(s)", "s-"), ("gateway, 2 worker(s)", "^-")):
        points = [
            (r["chunksize"], r["events_per_s_per_core"] / 1e3) for n, r in results.items() if n.startswith(prefix)
        ]
        right.plot([p[0] for p in points], [p[1] for p in points], style, label=prefix)
    right.set_xscale("log")
    right.set_xlabel("chunk size (events)")
    right.set_ylabel("thousand events / s per core")
    right.set_title("by chunk size")
    right.legend()
    events = report["dataset"]["events"]
    fig.suptitle(f"Dask per-core efficiency on {report['machine']['cpus']} cores ({events:,} events)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    # 500 k events a file: coffea chunks each file on its own, so with 8 files (250 k) chunks of 500 k
    # were chunks of 250 k, and 100 k were 125 k.
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--chunksizes", default="100000,250000,500000")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chunksizes = sorted(int(c) for c in args.chunksizes.split(","))
    if os.environ.get(MALLOC_VARIABLE):
        parser.error(f"${MALLOC_VARIABLE} is set in this shell: the one-process baseline would be slowed by it")
    report = measure(args.events, args.files, chunksizes)
    if not report["same_histograms_everywhere"]:
        print("WARNING: the runs gave different histograms")
    write_results("dask_efficiency", report, plot, args.out)


if __name__ == "__main__":
    main()
