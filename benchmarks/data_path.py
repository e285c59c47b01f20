"""Data path: events/s per core of the ttbar analysis, and bytes/s of sequential reads, by read path.

    .venv/bin/python -m benchmarks.data_path [--min-seconds 30] [--out benchmarks/results]

Starts one real facility (`af up`: XRootD origin + XCache on loopback), generates NanoAOD files
with `af data generate` sized so one pass of the analysis takes at least --min-seconds on this
machine, then measures in one run, in this order:

  analysis (analyses/ttbar.py, coffea, one process = one core), reading
    (a) local   the origin's files in-process from the local disk (the baseline)
    (b) cold    through the XCache, empty (every block fetched from the origin)
    (c) warm    through the XCache again (every block on the cache's disk)
    (d) origin  from the XRootD origin directly
  sequential read of files never read before (XRootD client, 8 MiB requests):
    local disk, origin, cache cold, cache warm

and writes data_path.json (rates and ratios to the local baseline) and data_path.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.results_io import RESULTS, write_results
from tests.harness import embedded_raw, free_port_block, run_af, write_facility

CALIBRATION_EVENTS = 200_000
EVENTS_PER_FILE = 250_000
BLOB_BYTES = 512 * 1024 * 1024
BLOB_FILES = 2
READ_REQUEST = 8 * 1024 * 1024


def _analysis(fileset: dict[str, Any]) -> dict[str, float]:
    from analyses import ttbar

    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = ttbar.run(fileset)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events": output["events"],
        "seconds": wall,
        "cpu_seconds": cpu,
        "events_per_s_per_core": output["events"] / wall,  # one process, one core
        "events_per_cpu_s": output["events"] / cpu,
        "hist_sum": float(output["hist"].sum().value),
    }


def _local_fileset(fileset: dict[str, Any], lake: Any, root: Path) -> dict[str, Any]:
    return {
        s: {**e, "files": {str(root) + lake.path_of(url): tree for url, tree in e["files"].items()}}
        for s, e in fileset.items()
    }


def _sequential_read(urls: list[str]) -> dict[str, float]:
    from XRootD import client

    total, started = 0, time.perf_counter()
    for url in urls:
        if url.startswith("root://"):
            with client.File() as handle:
                status, _ = handle.open(url, timeout=60)
                assert status.ok, status.message
                offset = 0
                while True:
                    status, chunk = handle.read(offset, READ_REQUEST, timeout=120)
                    assert status.ok, status.message
                    if not chunk:
                        break
                    offset += len(chunk)
                total += offset
        else:
            with open(url, "rb") as handle:
                while chunk := handle.read(READ_REQUEST):
                    total += len(chunk)
    seconds = time.perf_counter() - started
    return {"bytes": total, "seconds": seconds, "bytes_per_s": total / seconds}


def _write_blobs(root: Path) -> list[str]:
    paths = []
    for index in range(BLOB_FILES):
        path = f"/store/af/bench/blob_{index}.bin"
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for _ in range(BLOB_BYTES // READ_REQUEST):
                out.write(os.urandom(READ_REQUEST))
        paths.append(path)
    return paths


def _label_bars(axes: Any, bars: Any, labels: list[str]) -> None:
    """Write each bar's ratio on top of it."""
    for bar, label in zip(bars, labels, strict=True):
        axes.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    modes = results["analysis"]
    names = list(modes)
    rates = [modes[m]["events_per_s_per_core"] / 1e3 for m in names]
    bars = left.bar(names, rates, color=["#555555", "#1f77b4", "#2ca02c", "#ff7f0e"])
    _label_bars(left, bars, [f"{modes[m]['ratio_to_local']:.2f}x" for m in names])
    left.set_ylabel("thousand events / s per core")
    left.set_title("ttbar analysis (coffea), by read path")
    reads = results["sequential_read"]
    read_names = list(reads)
    bars = right.bar(read_names, [reads[r]["bytes_per_s"] / 1e6 for r in read_names], color="#9467bd")
    _label_bars(right, bars, [f"{reads[r]['ratio_to_origin']:.2f}x origin" for r in read_names])
    right.set_ylabel("MB / s")
    right.set_title("sequential read, 8 MiB requests")
    fig.suptitle(f"Data path on {results['machine']['cpus']} cores, loopback XRootD {results['machine']['note']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-seconds", type=float, default=30.0, help="shortest analysis pass to aim for")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from dask_backends.data import DataLake

    work = Path(tempfile.mkdtemp(prefix="af-bench-data-"))
    state = work / "state"
    port = free_port_block()
    raw = embedded_raw()
    raw["hub"] = {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}"}
    facility_file = write_facility(work / "facility.yaml", raw)
    run_af(state, "up", "--facility", str(facility_file), "--port", str(port))
    try:
        runtime = json.loads((state / "runtime.json").read_text())
        data = runtime["data"]
        root = Path(data["origin"]["local_root"])
        lake = DataLake(origin=data["origin"]["url"], cache=data["caches"]["local-xcache"]["url"])

        # Calibrate on a small sample, then grow the dataset until one local pass takes min-seconds.
        run_af(state, "data", "generate", "--sample", "ttbar", "--events", str(CALIBRATION_EVENTS), "--files", "1")
        calibration = _analysis(_local_fileset(lake.fileset(["ttbar"], use_cache=False), lake, root))
        events = int(calibration["events_per_s_per_core"] * args.min_seconds * 1.25)
        samples = ["ttbar", "wjets"]
        for _attempt in range(3):
            per_sample = {"ttbar": events * 2 // 3, "wjets": events // 3}
            for sample, count in per_sample.items():
                files = max(1, round(count / EVENTS_PER_FILE))
                run_af(state, "data", "generate", "--sample", sample, "--events", str(count), "--files", str(files))
            through_origin = lake.fileset(samples, use_cache=False)
            local = _analysis(_local_fileset(through_origin, lake, root))
            if local["seconds"] >= args.min_seconds:
                break
            events = int(events * args.min_seconds * 1.2 / local["seconds"])
        through_cache = lake.fileset(samples, use_cache=True)
        analysis = {
            "local": local,
            "cold cache": _analysis(through_cache),
            "warm cache": _analysis(through_cache),
            "origin": _analysis(through_origin),
        }
        baseline = analysis["local"]["events_per_s_per_core"]
        for mode in analysis.values():
            mode["ratio_to_local"] = mode["events_per_s_per_core"] / baseline
        # Every read path must give the same histograms (recorded, and reported below if not).
        same_histograms = len({m["hist_sum"] for m in analysis.values()}) == 1

        blobs = _write_blobs(root)
        reads = {
            "local disk": _sequential_read([str(root) + p for p in blobs]),
            "origin": _sequential_read([lake.url(p, use_cache=False) for p in blobs]),
            "cache cold": _sequential_read([lake.url(p) for p in blobs]),
            "cache warm": _sequential_read([lake.url(p) for p in blobs]),
        }
        for read in reads.values():
            read["ratio_to_local"] = read["bytes_per_s"] / reads["local disk"]["bytes_per_s"]
            read["ratio_to_origin"] = read["bytes_per_s"] / reads["origin"]["bytes_per_s"]
        bytes_on_disk = sum(f["bytes"] for s in samples for f in lake.catalogue()["samples"][s]["files"])
        results = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "note": "(origin, cache and reader on one host; files in the page cache)",
            },
            "dataset": {
                "events": sum(per_sample.values()),
                "files": {s: len(through_origin[s]["files"]) for s in samples},
                "bytes": bytes_on_disk,
            },
            "calibration": calibration,
            "analysis": analysis,
            "same_histograms_on_every_path": same_histograms,
            "sequential_read": reads,
        }
    finally:
        run_af(state, "down", check=False)
        shutil.rmtree(work, ignore_errors=True)  # generated files: hundreds of MB
    for mode, result in analysis.items():
        print(
            f"{mode:<11} {result['events_per_s_per_core']:>10,.0f} events/s/core "
            f"({result['ratio_to_local']:.2f}x local, {result['seconds']:.1f} s)"
        )
    for name, read in reads.items():
        print(f"{name:<11} {read['bytes_per_s'] / 1e6:>10,.0f} MB/s ({read['ratio_to_origin']:.2f}x origin)")
    if not same_histograms:
        print("WARNING: the read paths gave different histograms:", {m: r["hist_sum"] for m, r in analysis.items()})
    write_results("data_path", results, _plot, args.out)


if __name__ == "__main__":
    main()
