"""Failover: what an XCache outage costs an analysis, and how long a new run takes to choose the origin.

    .venv/bin/python -m benchmarks.failover [--events 400000] [--repeats 3] [--out benchmarks/results]

Starts one real facility (`af up`: XRootD origin + XCache on loopback), generates ttbar and W+jets
files with `af data generate`, then, --repeats times, in this order:

  (a) cache up   the ttbar analysis through the (warm) XCache: the baseline
  (b) failover   the same run, the XCache stopped (supervisord) before the middle chunk; the rest
                 of the run reads from the origin (dask_backends.failover)
  (c) origin     the same run from the origin directly
  decision       a new Python process with the XCache down: DataLake.from_environment().server(),
                 with the facility's XRootD client settings and with the client's defaults

and writes failover.json (seconds, ratios to (a), identical histograms) and failover.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tests.harness import ROOT, embedded_raw, free_port_block, run_af, write_facility
from tests.lake_control import IterativeStoppingCache, start_cache

CHUNK = 50_000
# The XRootD client's own defaults (XrdCl), set explicitly to measure the decision without the
# facility's settings (an explicit $XRD_* wins over dask_backends.failover.CLIENT_SETTINGS).
CLIENT_DEFAULTS = {
    "XRD_CONNECTIONWINDOW": "120",
    "XRD_CONNECTIONRETRY": "5",
    "XRD_TIMEOUTRESOLUTION": "15",
    "XRD_STREAMERRORWINDOW": "1800",
}
DECIDE = (
    "import json, time\n"
    "from dask_backends.data import DataLake\n"
    "t = time.perf_counter(); server = DataLake.from_environment().server()\n"
    "print(json.dumps({'seconds': time.perf_counter() - t, 'server': server}))\n"
)


def _run(fileset: dict[str, Any], executor: Any = None) -> tuple[float, Any]:
    from analyses import ttbar

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = ttbar.run(fileset, executor, chunksize=CHUNK)
    return time.perf_counter() - started, output


def _decide(origin: str, cache: str, extra: dict[str, str]) -> dict[str, Any]:
    env = {**os.environ, "AF_DATA_ORIGIN": origin, "AF_DATA_CACHE": cache, **extra}
    result = subprocess.run([sys.executable, "-c", DECIDE], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = results["runs"]
    names = list(runs)
    left.bar(names, [runs[n]["median_s"] for n in names], color=["tab:blue", "tab:orange", "tab:green"])
    for i, n in enumerate(names):
        left.text(i, runs[n]["median_s"], f"{runs[n]['ratio_to_cache_up']:.2f}x", ha="center", va="bottom")
    left.set_ylabel("seconds (median)")
    left.set_title(f"ttbar analysis, {results['events']} events: XCache stopped mid-run")
    decisions = results["decision"]
    labels = list(decisions)
    right.bar(labels, [decisions[k]["median_s"] for k in labels], color=["tab:orange", "tab:gray"])
    for i, k in enumerate(labels):
        right.text(i, decisions[k]["median_s"], f"{decisions[k]['median_s']:.3g} s", ha="center", va="bottom")
    right.axhline(3, color="red", linestyle="--", label="target 3 s")
    right.set_ylabel("seconds (median)")
    right.set_title("new run, XCache down: time to choose the origin")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000, help="events per sample (ttbar, wjets)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from dask_backends import failover
    from dask_backends.data import DataLake

    work = Path(tempfile.mkdtemp(prefix="af-bench-failover-"))
    state = work / "state"
    port = free_port_block()
    raw = embedded_raw()
    raw["hub"] = {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}"}
    run_af(state, "up", "--facility", str(write_facility(work / "facility.yaml", raw)), "--port", str(port))
    try:
        data = json.loads((state / "runtime.json").read_text())["data"]
        cache = data["caches"]["local-xcache"]
        lake = DataLake(origin=data["origin"]["url"], cache=cache["url"])
        files = max(1, args.events // 100_000)
        run_af(state, "data", "generate", "--events", str(args.events), "--files", str(files), timeout=900)
        through_cache = lake.fileset(["ttbar", "wjets"])
        through_origin = lake.fileset(["ttbar", "wjets"], use_cache=False)
        _run(through_cache)  # warm the cache
        seconds: dict[str, list[float]] = {"cache up": [], "failover": [], "origin": []}
        identical = True
        decision: dict[str, list[float]] = {"facility settings": [], "client defaults": []}
        for _ in range(args.repeats):
            up_s, up = _run(through_cache)
            stopping = IterativeStoppingCache(status=False, state_dir=str(state), at=args.events * 2 // CHUNK // 2)
            failover_s, failed_over = _run(through_cache, stopping)
            origin_s, _ = _run(through_origin)
            for label, extra in (("facility settings", {}), ("client defaults", CLIENT_DEFAULTS)):
                decided = _decide(lake.origin, lake.cache or "", extra)
                assert decided["server"] == lake.origin, decided
                decision[label].append(decided["seconds"])
            start_cache(state, cache["port"])
            time.sleep(failover.CLIENT_SETTINGS["StreamErrorWindow"])  # the client tries the cache again
            failover.forget()
            seconds["cache up"].append(up_s)
            seconds["failover"].append(failover_s)
            seconds["origin"].append(origin_s)
            identical &= bool(np.array_equal(up["hist"].values(flow=True), failed_over["hist"].values(flow=True)))
        baseline = statistics.median(seconds["cache up"])
        results = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "events": 2 * args.events,
            "chunk_events": CHUNK,
            "repeats": args.repeats,
            "runs": {
                name: {
                    "seconds": values,
                    "median_s": statistics.median(values),
                    "ratio_to_cache_up": statistics.median(values) / baseline,
                }
                for name, values in seconds.items()
            },
            "failover_histograms_identical": identical,
            "decision": {k: {"seconds": v, "median_s": statistics.median(v)} for k, v in decision.items()},
        }
    finally:
        run_af(state, "down", check=False)
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "failover.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, args.out / "failover.png")
    print(json.dumps({k: results[k] for k in ("runs", "decision", "failover_histograms_identical")}, indent=2))


if __name__ == "__main__":
    main()
