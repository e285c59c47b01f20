"""uproot's XRootD read settings for the ttbar analysis over a shaped link, chosen by measurement.

    .venv/bin/python -m benchmarks.uproot_reads [--rtt 25] [--out benchmarks/results]

A real XRootD origin behind the shaped link of tests/shaped_link.py (toxiproxy: the round trip,
1 Gbit/s). The ttbar processor (analyses.ttbar.TtbarProcessor, coffea's Runner as analyses.ttbar.run
sets it up, one process) reads generated NanoAOD files directly from the origin over the link with
each setting below; the baseline is the same analysis on the local files, in the same run:

  source       uproot's XRootDSource (vector reads; the facility's setting) or
               MultithreadedXRootDSource (one request per range, num_workers in parallel)
  max elements XRootDSource's ranges per vector read (None: the server's limit)
  preload      coffea reads the branches lazily, one request per branch and chunk, unless the
               Runner traces the processor (coffea.nanoevents.trace) and preloads them in bulk
  chunk size   events per chunk (fewer, larger requests)

Writes uproot_reads.json and uproot_reads.png.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.results_io import RESULTS, write_results
from tests.harness import free_port_block
from tests.shaped_link import ShapedLink, XRootDServer, work_folder

RATE_MBIT = 1000
EVENTS, FILES = 400_000, 2


def settings() -> dict[str, dict[str, Any]]:
    import uproot

    plain, threaded = uproot.source.xrootd.XRootDSource, uproot.source.xrootd.MultithreadedXRootDSource
    return {
        "XRootDSource, lazy, chunks 100k (facility)": {"options": {"handler": plain}, "chunksize": 100_000},
        "XRootDSource, 64 ranges per vector read": {
            "options": {"handler": plain, "max_num_elements": 64},
            "chunksize": 100_000,
        },
        "Multithreaded, 4 workers": {"options": {"handler": threaded, "num_workers": 4}, "chunksize": 100_000},
        "XRootDSource, chunks 200k": {"options": {"handler": plain}, "chunksize": 200_000},
        "XRootDSource, preload (traced)": {"options": {"handler": plain}, "chunksize": 100_000, "trace": True},
        "XRootDSource, preload, chunks 200k": {"options": {"handler": plain}, "chunksize": 200_000, "trace": True},
    }


def run_analysis(fileset: dict[str, Any], options: dict[str, Any], chunksize: int, trace: bool) -> dict[str, Any]:
    """analyses.ttbar's processor through coffea's Runner, with these read settings."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema
    from coffea.nanoevents.trace import trace as trace_columns

    from analyses.ttbar import TtbarProcessor

    runner = processor.Runner(
        executor=processor.IterativeExecutor(),
        schema=NanoAODSchema,
        chunksize=chunksize,
        metadata_cache={},
    )
    extra = {"trace": trace_columns} if trace else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        output = runner(
            fileset, processor_instance=TtbarProcessor(), treename="Events", uproot_options=options, **extra
        )
    seconds = time.perf_counter() - started
    return {
        "events": output["events"],
        "seconds": seconds,
        "events_per_s": output["events"] / seconds,
        "hist": output["hist"],
    }


def _fileset(lake: Path, server: str | None) -> dict[str, Any]:
    from af.data import read_catalogue

    entry = read_catalogue(lake)["samples"]["ttbar"]
    urls = [f"{server}/{f['path']}" if server else f"{lake}{f['path']}" for f in entry["files"]]
    meta = {"sample": "ttbar", "xsec_pb": entry["xsec_pb"], "events": entry["events"]}
    return {"ttbar": {"files": dict.fromkeys(urls, entry["tree"]), "metadata": meta}}


def measure(rtt_ms: float) -> dict[str, Any]:
    import numpy as np

    from af.data import generate_samples

    work = work_folder("bench-uproot")
    try:
        lake = work / "lake"
        generate_samples(lake, ("ttbar",), EVENTS, FILES, seed=9)
        base = free_port_block()
        with contextlib.ExitStack() as stack:
            origin = stack.enter_context(XRootDServer.origin(lake, base, work))
            link = stack.enter_context(ShapedLink(origin.port, base + 1, base + 2, log=work / "toxiproxy.log"))
            link.shape(rtt_ms=rtt_ms, rate_mbit=RATE_MBIT)
            local = run_analysis(_fileset(lake, None), {}, 100_000, trace=False)
            print(f"local files {local['events_per_s']:,.0f} events/s", flush=True)
            results = {}
            for name, setting in settings().items():
                result = run_analysis(
                    _fileset(lake, link.url), setting["options"], setting["chunksize"], setting.get("trace", False)
                )
                result["ratio_to_local"] = result["events_per_s"] / local["events_per_s"]
                result["setting"] = {
                    "chunksize": setting["chunksize"],
                    "preload": bool(setting.get("trace")),
                    **{k: getattr(v, "__name__", v) for k, v in setting["options"].items()},
                }
                results[name] = result
                print(f"{rtt_ms:g} ms {name:<42} {result['ratio_to_local']:.2f}x local", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    baseline = results["XRootDSource, lazy, chunks 100k (facility)"]["events_per_s"]
    same = True
    for result in results.values():
        result["ratio_to_facility_setting"] = result["events_per_s"] / baseline
        same = same and np.allclose(result.pop("hist").values(), local["hist"].values(), rtol=1e-12)
    local.pop("hist")
    return {
        "benchmark": "uproot_reads",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "link": {"rtt_ms": rtt_ms, "rate_mbit": RATE_MBIT, "path": "direct from the origin over the shaped link"},
        "dataset": {"events": EVENTS, "files": FILES},
        "local": local,
        "results": results,
        "same_histograms_everywhere": same,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    names = list(results)
    fig, axis = plt.subplots(figsize=(10, 5))
    bars = axis.barh(names, [results[n]["ratio_to_local"] for n in names], color="#2ca02c")
    for bar, name in zip(bars, names, strict=True):
        label = f" {results[name]['events_per_s'] / 1e3:.0f} k/s"
        axis.annotate(label, (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center")
    axis.invert_yaxis()
    axis.set_xlabel("events/s / local files")
    axis.set_title(f"ttbar analysis from the origin over {report['link']['rtt_ms']:g} ms, 1 Gbit/s, by read setting")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt", type=float, default=25.0, help="round trip of the shaped link (ms)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = measure(args.rtt)
    if not report["same_histograms_everywhere"]:
        print("WARNING: the settings gave different histograms")
    write_results("uproot_reads", report, plot, args.out)


if __name__ == "__main__":
    main()
