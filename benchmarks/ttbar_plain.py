"""The selection of analyses/ttbar.py in plain uproot + awkward + vector, without coffea.

The benchmarks' floor for the facility's overhead: the same objects, regions, variations and
histograms as `analyses.ttbar.TtbarProcessor`, read with `uproot.iterate` (only the branches the
selection uses) and computed in one process. `run` returns the same histogram (checked against
coffea's by benchmarks.dask_efficiency).
"""

from __future__ import annotations

import time
from typing import Any

import awkward as ak
import numpy as np
import uproot
import vector

from analyses.ttbar import BTAG_MEDIUM, BTAG_SF_SHIFT, JES_SHIFT, LUMI_PB, new_histogram

vector.register_awkward()

BRANCHES = [
    "Electron_pt",
    "Electron_eta",
    "Electron_cutBased",
    "Muon_pt",
    "Muon_eta",
    "Muon_tightId",
    "Muon_pfRelIso04_all",
    "Jet_pt",
    "Jet_eta",
    "Jet_phi",
    "Jet_mass",
    "Jet_btagDeepFlavB",
    "genWeight",
]


def _n_leptons(events: ak.Array) -> ak.Array:
    electrons = (events.Electron_pt > 30) & (abs(events.Electron_eta) < 2.1) & (events.Electron_cutBased == 4)
    muons = (
        (events.Muon_pt > 30) & (abs(events.Muon_eta) < 2.1) & events.Muon_tightId & (events.Muon_pfRelIso04_all < 0.15)
    )
    return ak.sum(electrons, axis=1) + ak.sum(muons, axis=1)


def _jets(events: ak.Array, jet_scale: float) -> ak.Array:
    jets = ak.zip(
        {
            "pt": events.Jet_pt * jet_scale,
            "eta": events.Jet_eta,
            "phi": events.Jet_phi,
            "mass": events.Jet_mass * jet_scale,
            "btag": events.Jet_btagDeepFlavB,
        },
        with_name="Momentum4D",
    )
    return jets[(jets.pt > 25) & (abs(jets.eta) < 2.4)]


def _trijet_mass(jets: ak.Array) -> np.ndarray:
    trijet = ak.combinations(jets, 3, fields=["j1", "j2", "j3"])
    p4 = trijet.j1 + trijet.j2 + trijet.j3
    max_btag = np.maximum(trijet.j1.btag, np.maximum(trijet.j2.btag, trijet.j3.btag))
    p4 = p4[max_btag > BTAG_MEDIUM]
    best = ak.argmax(p4.pt, axis=1, keepdims=True)
    return ak.to_numpy(ak.flatten(p4[best].mass))


def _fill(histogram: Any, events: ak.Array, process: str, norm: float) -> None:
    sign = np.sign(ak.to_numpy(events.genWeight))
    n_leptons = _n_leptons(events)
    for variation, jet_scale in (("nominal", 1.0), ("jes_up", 1 + JES_SHIFT), ("jes_down", 1 - JES_SHIFT)):
        jets = _jets(events, jet_scale)
        n_btag = ak.sum(jets.btag > BTAG_MEDIUM, axis=1)
        selected = (n_leptons == 1) & (ak.num(jets) >= 4) & (n_btag >= 1)
        weights = {variation: sign * norm}
        if variation == "nominal":
            weights["btag_up"] = weights["nominal"] * (1 + BTAG_SF_SHIFT) ** ak.to_numpy(n_btag)
            weights["btag_down"] = weights["nominal"] * (1 - BTAG_SF_SHIFT) ** ak.to_numpy(n_btag)
        one_b = ak.to_numpy(selected & (n_btag == 1))
        two_b = ak.to_numpy(selected & (n_btag >= 2))
        ht = ak.to_numpy(ak.sum(jets.pt, axis=1))
        mass = _trijet_mass(jets[two_b])
        for name, weight in weights.items():
            histogram.fill(observable=ht[one_b], region="4j1b", process=process, variation=name, weight=weight[one_b])
            histogram.fill(observable=mass, region="4j2b", process=process, variation=name, weight=weight[two_b])


def run(
    fileset: dict[str, Any], step_size: int = 500_000, uproot_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ttbar histograms of a coffea-style fileset, in this process; same output keys as analyses.ttbar.run."""
    histogram = new_histogram()
    started, events = time.perf_counter(), 0
    for sample, entry in fileset.items():
        meta = entry.get("metadata", {})
        xsec, total = meta.get("xsec_pb"), meta.get("events")
        norm = xsec * LUMI_PB / total if xsec and total else 1.0
        files = [{url: tree} for url, tree in entry["files"].items()]
        for chunk in uproot.iterate(files, BRANCHES, step_size=step_size, **(uproot_options or {})):
            _fill(histogram, chunk, meta.get("sample") or sample, norm)
            events += len(chunk)
    return {"hist": histogram, "events": events, "seconds": time.perf_counter() - started}
