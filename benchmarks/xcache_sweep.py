"""XCache settings swept on loopback and over a shaped link; then the analysis at WAN distances.

    .venv/bin/python -m benchmarks.xcache_sweep [--rtt 25] [--analysis-rtts 10,25,50] [--out benchmarks/results]
    .venv/bin/python -m benchmarks.xcache_sweep --warm-check [--rtt 25] [--reps 5]   # minutes, not an hour

A real XRootD origin and XCache (af.xrootd's configuration) and the shaped link of
tests/shaped_link.py (toxiproxy: half the round trip each way, 1 Gbit/s). For each cache setting
(one factor at a time from the facility's defaults, then the best of each factor together), on
loopback and through the link, with a new empty cache each time:

  sequential   a 256 MiB file read in 8 MiB requests: cold cache, warm cache; baseline: direct
               from the origin over the same link
  vector       the ttbar selection's branches of generated NanoAOD files read by uproot's XRootD
               source (vector reads, as the analysis reads them): cold, warm; baseline: direct

Then, with the facility's settings (af.xrootd.CACHE_TUNING) and the sweep's best, the ttbar
analysis (analyses/ttbar.py, one process) over the link at each --analysis-rtts: local files
(the baseline), direct from the origin, cold cache, warm cache; histograms must all be equal.
Writes xcache_sweep.json and xcache_sweep.png.

--warm-check measures only what a warm cache costs over the link, with the facility's settings
(a few minutes; writes xcache_warm_check.json, no plot): open + stat + close of a file the cache
holds, at the link's round trip, at 8 times it and with the link cut (baseline: the same open
directly from the origin over the link); and the ttbar analysis with coffea's preloading and with
lazy reads (ttbar.run's `preload`), direct, cold cache, warm cache and warm with the link cut,
--reps times interleaved; baseline: local files in the same repetition.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from af import xrootd
from benchmarks.data_path import _sequential_read
from benchmarks.results_io import RESULTS, write_results
from dask_backends import failover
from tests.harness import free_port_block
from tests.shaped_link import ShapedLink, XRootDServer, work_folder

RATE_MBIT = 1000
BLOB_BYTES = 256 * 1024 * 1024
VECTOR_EVENTS, VECTOR_FILES = 400_000, 2
WARM_ALTERNATIONS = 3  # --warm-check: warm runs of each read mode per repetition, between local runs
# One factor at a time from the facility's settings; each group's best joins the combination.
FACTORS: dict[str, dict[str, dict[str, str]]] = {
    "block size": {"blocks 4m": {"pfc.blocksize": "4m"}, "blocks 16m": {"pfc.blocksize": "16m"}},
    "prefetch": {"prefetch 0": {"pfc.prefetch": "0"}, "prefetch 32": {"pfc.prefetch": "32"}},
    "RAM": {"ram 4g": {"pfc.ram": "4g"}},
    "write queue": {"writequeue 64 8": {"pfc.writequeue": "64 8"}},
    "streams": {"streams 4": {"pss.config streams": "4"}},
}


class Bench:
    """The servers of one run: origin, the shaped link in front of it, and caches started on demand."""

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        from af.data import generate_samples

        self.work, self.lake = work, work / "lake"
        generate_samples(self.lake, ("ttbar",), VECTOR_EVENTS, VECTOR_FILES, seed=5)
        blob = self.lake / "store/af/bench/blob.bin"
        blob.parent.mkdir(parents=True, exist_ok=True)
        with open(blob, "wb") as out:
            for _ in range(BLOB_BYTES // (8 << 20)):
                out.write(os.urandom(8 << 20))
        self.blob = "/store/af/bench/blob.bin"
        base = free_port_block()
        self.origin = stack.enter_context(XRootDServer.origin(self.lake, base, work))
        self.link = stack.enter_context(ShapedLink(base, base + 1, base + 2, log=work / "toxiproxy.log"))
        self.runs = 0

    def upstream(self, shaped: bool) -> str:
        return self.link.url if shaped else self.origin.url

    @contextlib.contextmanager
    def cache(self, shaped: bool, tuning: dict[str, str]) -> Iterator[XRootDServer]:
        """A new, empty XCache in front of the origin (through the link when shaped)."""
        self.runs += 1
        root = self.work / f"xcache-{self.runs}"
        # A new port each time: the XRootD client keeps its connections to a server by address.
        port = free_port_block(size=1)
        with XRootDServer.cache(root, port, self.upstream(shaped), self.work, tuning) as cache:
            # As DataLake does: the cache, then the origin behind it (ttbar.run's preload choice reads it).
            failover.register_route([cache.url, self.upstream(shaped)])
            yield cache
        shutil.rmtree(root, ignore_errors=True)

    def nanoaod_paths(self) -> list[str]:
        from af.data import read_catalogue

        return [f["path"] for f in read_catalogue(self.lake)["samples"]["ttbar"]["files"]]


def _vector_read(urls: list[str]) -> dict[str, float]:
    """The analysis' branches of each file, read the way uproot reads them over XRootD."""
    import uproot

    from benchmarks.ttbar_plain import BRANCHES

    started, events = time.perf_counter(), 0
    for url in urls:
        with uproot.open(url, handler=uproot.source.xrootd.XRootDSource) as file:
            events += len(file["Events"].arrays(BRANCHES))
    seconds = time.perf_counter() - started
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def _reads(bench: Bench, server: str) -> dict[str, Any]:
    return {
        "sequential": _sequential_read([f"{server}/{bench.blob}"]),
        "vector": _vector_read([f"{server}/{p}" for p in bench.nanoaod_paths()]),
    }


def _measure_setting(bench: Bench, shaped: bool, tuning: dict[str, str], direct: dict[str, Any]) -> dict[str, Any]:
    with bench.cache(shaped, tuning) as cache:
        cold = _reads(bench, cache.url)
        warm = _reads(bench, cache.url)
    result: dict[str, Any] = {"tuning": {**xrootd.CACHE_TUNING, **tuning}}
    for kind, rate in (("sequential", "bytes_per_s"), ("vector", "events_per_s")):
        result[kind] = {
            "cold": cold[kind],
            "warm": warm[kind],
            "cold_ratio_to_direct": cold[kind][rate] / direct[kind][rate],
            "warm_ratio_to_direct": warm[kind][rate] / direct[kind][rate],
        }
    # One figure per setting: the geometric mean of the two cold ratios.
    result["cold_score"] = math.sqrt(
        result["sequential"]["cold_ratio_to_direct"] * result["vector"]["cold_ratio_to_direct"]
    )
    return result


def _print(link: str, name: str, result: dict[str, Any]) -> None:
    seq, vec = result["sequential"], result["vector"]
    print(
        f"{link:<9} {name:<24} seq cold {seq['cold_ratio_to_direct']:.2f} warm {seq['warm_ratio_to_direct']:.2f}"
        f" | vector cold {vec['cold_ratio_to_direct']:.2f} warm {vec['warm_ratio_to_direct']:.2f}"
        f" ({seq['cold']['bytes_per_s'] / 1e6:.0f} MB/s cold)",
        flush=True,
    )


def sweep(bench: Bench, rtt_ms: float) -> dict[str, Any]:
    links: dict[str, Any] = {}
    for link, shaped in (("loopback", False), (f"{rtt_ms:g} ms", True)):
        bench.link.shape(rtt_ms=rtt_ms, rate_mbit=RATE_MBIT)
        direct = _reads(bench, bench.upstream(shaped))
        settings = {"facility": _measure_setting(bench, shaped, {}, direct)}
        _print(link, "facility", settings["facility"])
        for group in FACTORS.values():
            for name, tuning in group.items():
                settings[name] = _measure_setting(bench, shaped, tuning, direct)
                _print(link, name, settings[name])
        links[link] = {"shaped": shaped, "direct": direct, "settings": settings}

    # The best of each factor (over both links) that beats the facility's settings joins the combination.
    def score(name: str) -> float:
        return math.prod(links[link]["settings"][name]["cold_score"] for link in links)

    combined: dict[str, str] = {}
    for group in FACTORS.values():
        best = max(group, key=score)
        if score(best) > score("facility"):
            combined.update(group[best])
    for link in links.values():
        result = _measure_setting(bench, link["shaped"], combined, link["direct"])
        link["settings"]["best combined"] = result
        _print("combined", str(combined), result)
    return {"links": links, "best_combined": combined}


def _analysis(fileset: dict[str, Any], preload: bool | None = None) -> dict[str, Any]:
    from analyses import ttbar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started, cpu = time.perf_counter(), time.process_time()
        output = ttbar.run(fileset, preload=preload)
    seconds = time.perf_counter() - started
    return {
        "events": output["events"],
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "events_per_s": output["events"] / seconds,
        "hist": output["hist"],
    }


def _fileset(bench: Bench, server: str | None) -> dict[str, Any]:
    from af.data import read_catalogue

    entry = read_catalogue(bench.lake)["samples"]["ttbar"]
    urls = [f"{server}/{f['path']}" if server else f"{bench.lake}{f['path']}" for f in entry["files"]]
    meta = {"sample": "ttbar", "xsec_pb": entry["xsec_pb"], "events": entry["events"]}
    return {"ttbar": {"files": dict.fromkeys(urls, entry["tree"]), "metadata": meta}}


def analysis_at_distances(bench: Bench, rtts: list[float], settings: dict[str, dict[str, str]]) -> dict[str, Any]:
    import numpy as np

    def fileset(server: str | None) -> dict[str, Any]:
        return _fileset(bench, server)

    local = _analysis(fileset(None))
    results: dict[str, Any] = {"local": local}
    for rtt in rtts:
        bench.link.shape(rtt_ms=rtt, rate_mbit=RATE_MBIT)
        at = {"direct": _analysis(fileset(bench.link.url))}
        for name, tuning in settings.items():
            with bench.cache(True, tuning) as cache:
                at[f"cold cache ({name})"] = _analysis(fileset(cache.url))
                at[f"warm cache ({name})"] = _analysis(fileset(cache.url))
        for mode, result in at.items():
            result["ratio_to_local"] = result["events_per_s"] / local["events_per_s"]
            result["ratio_to_direct"] = result["events_per_s"] / at["direct"]["events_per_s"]
            print(
                f"analysis {rtt:g} ms {mode:<28} {result['ratio_to_local']:.2f}x local "
                f"{result['ratio_to_direct']:.2f}x direct",
                flush=True,
            )
        results[f"{rtt:g} ms"] = at
    every = [local] + [r for key, at in results.items() if key != "local" for r in at.values()]
    same = all(np.array_equal(r["hist"].values(), local["hist"].values()) for r in every)
    for result in every:
        result.pop("hist", None)
    results["same_histograms_everywhere"] = same
    return results


def _open_ms(url: str, times: int = 10) -> float:
    """Median milliseconds of opening a file, asking its size and closing it (XRootD client)."""
    from XRootD import client

    spent = []
    for _ in range(times):
        started = time.perf_counter()
        handle = client.File()
        status, _ = handle.open(url, timeout=30)
        if not status.ok:
            raise OSError(f"open {url}: {status.message}")
        status, _ = handle.stat(timeout=30)
        if not status.ok:
            raise OSError(f"stat {url}: {status.message}")
        handle.close(timeout=30)
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1e3


def warm_check(bench: Bench, rtt_ms: float, reps: int) -> dict[str, Any]:
    """Opens of a file a warm cache holds, and the analysis with and without preloading (see --warm-check)."""
    import numpy as np

    from dask_backends.data import through_local_cache

    failover.tune_client()  # before any connection: a cut link's channel is retried after 10 s, not 1800
    paths = bench.nanoaod_paths()
    bench.link.shape(rtt_ms=rtt_ms, rate_mbit=RATE_MBIT)
    with bench.cache(True, {}) as cache:
        _sequential_read([f"{cache.url}/{paths[0]}"])  # the whole file into the cache
        time.sleep(2)  # its last blocks written
        direct = _open_ms(f"{bench.link.url}/{paths[0]}", 5)
        opens = {f"cache, {rtt_ms:g} ms": _open_ms(f"{cache.url}/{paths[0]}")}
        bench.link.shape(rtt_ms=8 * rtt_ms, rate_mbit=RATE_MBIT)
        opens[f"cache, {8 * rtt_ms:g} ms"] = _open_ms(f"{cache.url}/{paths[0]}")
        bench.link.set_enabled(False)
        try:
            opens["cache, link cut"] = _open_ms(f"{cache.url}/{paths[0]}")
        finally:
            bench.link.set_enabled(True)
            bench.link.shape(rtt_ms=rtt_ms, rate_mbit=RATE_MBIT)
        default_lazy = through_local_cache(f"{cache.url}/{paths[0]}")
    opens_report = {
        "direct_ms": direct,
        "cache_ms": opens,
        "cache_ratio_to_direct": {name: ms / direct for name, ms in opens.items()},
    }
    for name, ms in opens.items():
        print(f"open+stat+close {name:<20} {ms:7.2f} ms ({ms / direct:.3f} of direct, {direct:.1f} ms)", flush=True)

    # Each repetition: local, direct, two cold caches; then, on the second cache (warm), preloading
    # and lazy reads alternating with local runs, and both with the link cut. Ratios to the median of
    # the repetition's local runs: other work on the machine shifts every run, neighbours alike.
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(reps):
        at: dict[str, list[dict[str, Any]]] = {"local": [_analysis(_fileset(bench, None))]}
        for preload, how in ((True, "preload"), (False, "lazy")):
            at[f"direct, {how}"] = [_analysis(_fileset(bench, bench.link.url), preload)]
        with bench.cache(True, {}) as cache:
            at["cold cache, preload"] = [_analysis(_fileset(bench, cache.url), True)]
        with bench.cache(True, {}) as cache:
            at["cold cache, lazy"] = [_analysis(_fileset(bench, cache.url), False)]
            for _ in range(WARM_ALTERNATIONS):
                for preload, how in ((True, "preload"), (False, "lazy")):
                    at.setdefault(f"warm cache, {how}", []).append(_analysis(_fileset(bench, cache.url), preload))
                at["local"].append(_analysis(_fileset(bench, None)))
            bench.link.set_enabled(False)
            try:
                for preload, how in ((True, "preload"), (False, "lazy")):
                    at[f"warm cache, link cut, {how}"] = [_analysis(_fileset(bench, cache.url), preload)]
            finally:
                bench.link.set_enabled(True)
        local_rate = statistics.median(r["events_per_s"] for r in at["local"])
        local_cpu = statistics.median(r["cpu_seconds"] for r in at["local"])
        for mode, results in at.items():
            for result in results:
                result["ratio_to_local"] = result["events_per_s"] / local_rate
                result["cpu_ratio_to_local"] = local_cpu / result["cpu_seconds"]
            runs.setdefault(mode, []).extend(results)
        print(
            " | ".join(f"{m} {statistics.median(r['ratio_to_local'] for r in rs):.2f}" for m, rs in at.items()),
            flush=True,
        )
    every = [r for results in runs.values() for r in results]
    same = all(np.array_equal(r["hist"].values(), every[0]["hist"].values()) for r in every)
    for result in every:
        result.pop("hist", None)
    analysis = {
        mode: {
            "median_ratio_to_local": statistics.median(r["ratio_to_local"] for r in results),
            "median_cpu_ratio_to_local": statistics.median(r["cpu_ratio_to_local"] for r in results),
            "ratios_to_local": [r["ratio_to_local"] for r in results],
            "runs": results,
        }
        for mode, results in runs.items()
    }
    for mode, entry in analysis.items():
        print(
            f"analysis {mode:<30} median {entry['median_ratio_to_local']:.2f} of local (events/s), "
            f"{entry['median_cpu_ratio_to_local']:.2f} (this process's CPU per event)",
            flush=True,
        )
    return {
        "opens": opens_report,
        "analysis": analysis,
        "reps": reps,
        "ttbar_run_default_through_this_cache": "lazy" if default_lazy else "preload",
        "same_histograms_everywhere": same,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = report["sweep"]["links"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    for axis, kind in zip(axes[:2], ("sequential", "vector"), strict=True):
        names = list(next(iter(links.values()))["settings"])
        width = 0.8 / (2 * len(links))
        for index, (link, data) in enumerate(links.items()):
            for offset, temperature in enumerate(("cold", "warm")):
                values = [data["settings"][n][kind][f"{temperature}_ratio_to_direct"] for n in names]
                position = [i + (2 * index + offset) * width for i in range(len(names))]
                axis.bar(position, values, width, label=f"{link}, {temperature}")
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=40, ha="right")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_ylabel("rate / direct from the origin over the same link")
        axis.set_title(f"{kind} reads through XCache, by setting")
        axis.legend(fontsize=8)
    analysis = report["analysis"]
    rtts = [k for k in analysis if k.endswith(" ms")]
    modes = list(analysis[rtts[0]])
    for mode in modes:
        axes[2].plot(rtts, [analysis[r][mode]["ratio_to_local"] for r in rtts], "o-", label=mode)
    axes[2].set_xlabel("round trip to the origin (1 Gbit/s)")
    axes[2].set_ylabel("events/s / local files")
    axes[2].set_title("ttbar analysis, one process")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt", type=float, default=25.0, help="round trip of the shaped link in the sweep (ms)")
    parser.add_argument("--analysis-rtts", default="10,25,50")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--warm-check", action="store_true", help="only the warm cache's opens and analysis (minutes)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of --warm-check's analysis runs")
    args = parser.parse_args()
    if args.warm_check:
        _main_warm_check(args)
        return
    work = work_folder("bench-xcache")
    try:
        with contextlib.ExitStack() as stack:
            bench = Bench(work, stack)
            swept = sweep(bench, args.rtt)
            settings = {"facility": {}}
            if swept["best_combined"]:
                settings["sweep's best"] = swept["best_combined"]
            rtts = [float(r) for r in args.analysis_rtts.split(",")]
            analysis = analysis_at_distances(bench, rtts, settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "xcache_sweep",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "link": {"rate_mbit": RATE_MBIT, "sweep_rtt_ms": args.rtt, "shaper": "toxiproxy (tests/shaped_link.py)"},
        "facility_tuning": xrootd.CACHE_TUNING,
        "sweep": swept,
        "analysis": analysis,
    }
    if not analysis["same_histograms_everywhere"]:
        print("WARNING: the read paths gave different histograms")
    write_results("xcache_sweep", report, plot, args.out)


def _main_warm_check(args: argparse.Namespace) -> None:
    work = work_folder("bench-xcache-warm")
    try:
        with contextlib.ExitStack() as stack:
            checked = warm_check(Bench(work, stack), args.rtt, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "xcache_sweep --warm-check",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "xrootd": _xrootd_version(),
        "link": {"rate_mbit": RATE_MBIT, "rtt_ms": args.rtt, "shaper": "toxiproxy (tests/shaped_link.py)"},
        "events": VECTOR_EVENTS,
        "files": VECTOR_FILES,
        "facility_tuning": xrootd.CACHE_TUNING,
        **checked,
    }
    if not checked["same_histograms_everywhere"]:
        print("WARNING: the read paths gave different histograms")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "xcache_warm_check.json"
    data.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {data}")


def _xrootd_version() -> str:
    binary = shutil.which("xrootd")
    if binary is None:
        return "unknown"
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip()


if __name__ == "__main__":
    main()
