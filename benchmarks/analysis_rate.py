"""Analysis rate: events/s per core of the `agc` ttbar analysis with all its systematics, beside a
plain uproot + awkward selection without systematics, on the same files in one run.

    .venv/bin/python -m benchmarks.analysis_rate [--events 1000000] [--out benchmarks/results]

Generates NanoAOD files (`af.data.generate_samples`: ttbar and W+jets, half each, on local disk),
then in one process (one core), in this order:

  (a) plain    uproot.iterate + awkward + vector: one lepton, >= 4 jets, >= 1 b tag, HT and trijet
               mass histograms (hist), nominal only: what the AGC's pipeline needs at the least
  (b) agc      analyses/ttbar.py (coffea, IterativeExecutor), `agc` definitions, nominal only
  (c) agc+syst the same with every systematic: JES up/down, JER, 8 b-tag weights, W+jets scale

and writes analysis_rate.json and analysis_rate.png. Reads are from the local disk: on this machine
the computation, not the I/O, sets the rate (benchmarks/data_path.py).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.results_io import RESULTS, write_results

CHUNK = 500_000


def _fileset(root: Path) -> dict[str, Any]:
    from af import data

    catalogue = data.read_catalogue(root)["samples"]
    return {
        name: {
            "files": {str(root / f["path"].lstrip("/")): "Events" for f in entry["files"]},
            "metadata": {"sample": name, **{k: v for k, v in entry.items() if k != "files"}},
        }
        for name, entry in catalogue.items()
    }


def _plain(fileset: dict[str, Any]) -> dict[str, Any]:
    """Selection and histograms with uproot + awkward + vector only (no coffea, no systematics)."""
    import awkward as ak
    import hist
    import numpy as np
    import uproot
    import vector

    vector.register_awkward()
    ht = hist.Hist.new.Reg(25, 50, 550).Weight()
    mass = hist.Hist.new.Reg(25, 50, 550).Weight()
    branches = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2", "Jet_jetId", "genWeight"]
    branches += [f"Muon_{f}" for f in ("pt", "eta", "tightId", "sip3d", "pfRelIso04_all")]
    branches += [f"Electron_{f}" for f in ("pt", "eta", "cutBased", "sip3d")]
    events, selected = 0, {"4j1b": 0, "4j2b": 0}
    for entry in fileset.values():
        for arrays in uproot.iterate(entry["files"], branches, step_size=CHUNK):
            events += len(arrays)
            mu_ok = (arrays.Muon_pt > 30) & (abs(arrays.Muon_eta) < 2.1) & arrays.Muon_tightId
            mu_ok = mu_ok & (arrays.Muon_sip3d < 4) & (arrays.Muon_pfRelIso04_all < 0.15)
            el_ok = (arrays.Electron_pt > 30) & (abs(arrays.Electron_eta) < 2.1) & (arrays.Electron_cutBased == 4)
            el_ok = el_ok & (arrays.Electron_sip3d < 4)
            jet_ok = (arrays.Jet_pt > 30) & (abs(arrays.Jet_eta) < 2.4) & ((arrays.Jet_jetId & 4) == 4)
            jets = ak.zip(
                {k: arrays[f"Jet_{k}"][jet_ok] for k in ("pt", "eta", "phi", "mass", "btagCSVV2")},
                with_name="Momentum4D",
            )
            n_b = ak.sum(jets.btagCSVV2 > 0.5, axis=1)
            base = (ak.sum(mu_ok, axis=1) + ak.sum(el_ok, axis=1) == 1) & (ak.num(jets) >= 4)
            weight = np.sign(ak.to_numpy(arrays.genWeight))
            # the AGC counts 4j1b tags with >= 0.5 and 4j2b tags with > 0.5
            one_b = ak.to_numpy(base & (ak.sum(jets.btagCSVV2 >= 0.5, axis=1) == 1))
            two_b = ak.to_numpy(base & (n_b >= 2))
            selected["4j1b"] += int(one_b.sum())
            selected["4j2b"] += int(two_b.sum())
            ht.fill(ak.to_numpy(ak.sum(jets.pt[one_b], axis=1)), weight=weight[one_b])
            trijet = ak.combinations(jets[two_b], 3, fields=["a", "b", "c"])
            p4 = trijet.a + trijet.b + trijet.c
            tagged = np.maximum(trijet.a.btagCSVV2, np.maximum(trijet.b.btagCSVV2, trijet.c.btagCSVV2)) > 0.5
            p4 = p4[tagged]
            best = p4[ak.argmax(p4.pt, axis=1, keepdims=True)]
            mass.fill(ak.to_numpy(ak.flatten(best.mass)), weight=weight[two_b])
    return {"events": events, "selected": selected, "filled": float(ht.sum().value + mass.sum().value)}


def _coffea(fileset: dict[str, Any], with_systematics: bool) -> dict[str, Any]:
    from analyses import ttbar

    output = ttbar.run(fileset, chunksize=CHUNK, definitions="agc", with_systematics=with_systematics)
    variations = sum(len(v) for v in output["variations"].values())
    selected = {r: sum(flow[r] for flow in output["cutflow"].values()) for r in ("4j1b", "4j2b")}
    return {
        "events": output["events"],
        "selected": selected,
        "filled": float(output["hist"].sum().value),
        "histograms": variations * 2,
    }


def _measure(name: str, func: Any, *args: Any) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = func(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rate = result["events"] / wall
    print(f"{name:>9}: {result['events']} events in {wall:.1f} s = {rate / 1e3:.1f} k events/s per core")
    return {**result, "seconds": wall, "cpu_seconds": cpu, "events_per_s_per_core": rate}


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["runs"])
    rates = [results["runs"][n]["events_per_s_per_core"] / 1e3 for n in names]
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    bars = ax.barh(names, rates, color=["grey", "tab:blue", "tab:orange"])
    ax.bar_label(bars, labels=[f"{r:.0f} k" for r in rates], padding=3)
    ax.set_xlabel("k events / s per core (one process)")
    ax.set_title(f"ttbar analysis rate, {results['events']:,} generated events")
    ax.invert_yaxis()
    ax.set_xlim(0, max(rates) * 1.2)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="generated events (ttbar + W+jets)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from af import data

    with tempfile.TemporaryDirectory(prefix="af-rate-") as folder:
        root = Path(folder)
        data.generate_samples(root, ("ttbar", "wjets"), args.events // 2, max(1, args.events // 500_000), 2026)
        fileset = _fileset(root)
        _measure("warm-up", _plain, fileset)  # page cache and imports, not counted
        runs = {
            "plain uproot+awkward, nominal": _measure("plain", _plain, fileset),
            "agc (coffea), nominal": _measure("agc", _coffea, fileset, False),
            "agc (coffea), all systematics": _measure("agc+syst", _coffea, fileset, True),
        }
    # The same events pass both implementations: the rates compare like with like.
    counts = {name: run["selected"] for name, run in runs.items()}
    if len({tuple(c.values()) for c in counts.values()}) != 1:
        raise SystemExit(f"the implementations select different events: {counts}")
    plain = runs["plain uproot+awkward, nominal"]["events_per_s_per_core"]
    for run in runs.values():
        run["ratio_to_plain"] = run["events_per_s_per_core"] / plain
    results = {
        "events": args.events,
        "chunk": CHUNK,
        "machine": {"cores": __import__("os").cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }
    write_results("analysis_rate", results, _plot, args.out)


if __name__ == "__main__":
    main()
