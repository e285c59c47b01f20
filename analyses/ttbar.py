"""ttbar analysis in the style of the IRIS-HEP Analysis Grand Challenge, as a coffea processor.

Selection: exactly one tight lepton (electron or muon, pT > 30 GeV), at least four jets
(pT > 25 GeV, |eta| < 2.4), at least one b-tagged jet (DeepJet medium working point).
Regions: `4j1b` (exactly one b tag) fills HT; `4j2b` (two or more) fills the mass of the
highest-pT trijet that holds a b-tagged jet. Variations: nominal, jet-energy scale +-3 %, and a
b-tag scale-factor weight +-10 % per b-tagged jet.

The notebook notebooks/ttbar_analysis.ipynb runs it; benchmarks and tests reuse it.
"""

from __future__ import annotations

import time
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from coffea.nanoevents.trace import trace as trace_columns

BTAG_MEDIUM = 0.2783  # DeepJet medium working point
LUMI_PB = 3378.0  # the AGC's integrated luminosity (CMS 2015)
JES_SHIFT = 0.03
BTAG_SF_SHIFT = 0.10
VARIATIONS = ("nominal", "jes_up", "jes_down", "btag_up", "btag_down")


def new_histogram() -> hist.Hist:
    return (
        hist.Hist.new.Reg(25, 50, 550, name="observable", label="observable [GeV]")
        .StrCat(["4j1b", "4j2b"], name="region", label="region")
        .StrCat([], name="process", label="process", growth=True)
        .StrCat(list(VARIATIONS), name="variation", label="variation")
        .Weight()
    )


def _objects(events: ak.Array, jet_scale: float) -> tuple[ak.Array, ak.Array, ak.Array]:
    electrons = events.Electron[
        (events.Electron.pt > 30) & (abs(events.Electron.eta) < 2.1) & (events.Electron.cutBased == 4)
    ]
    muons = events.Muon[
        (events.Muon.pt > 30) & (abs(events.Muon.eta) < 2.1) & events.Muon.tightId & (events.Muon.pfRelIso04_all < 0.15)
    ]
    jets = events.Jet
    jets = ak.zip(
        {
            "pt": jets.pt * jet_scale,
            "eta": jets.eta,
            "phi": jets.phi,
            "mass": jets.mass * jet_scale,
            "btagDeepFlavB": jets.btagDeepFlavB,
        },
        with_name="PtEtaPhiMLorentzVector",
        behavior=events.behavior,
    )
    jets = jets[(jets.pt > 25) & (abs(jets.eta) < 2.4)]
    return electrons, muons, jets


def _trijet_mass(jets: ak.Array) -> ak.Array:
    """Mass of the highest-pT three-jet combination that holds at least one b-tagged jet."""
    trijet = ak.combinations(jets, 3, fields=["j1", "j2", "j3"])
    p4 = trijet.j1 + trijet.j2 + trijet.j3
    max_btag = np.maximum(trijet.j1.btagDeepFlavB, np.maximum(trijet.j2.btagDeepFlavB, trijet.j3.btagDeepFlavB))
    p4 = p4[max_btag > BTAG_MEDIUM]
    best = ak.argmax(p4.pt, axis=1, keepdims=True)
    return ak.flatten(p4[best].mass)


class TtbarProcessor(processor.ProcessorABC):
    """Fills HT and trijet-mass histograms per region, process and variation."""

    def process(self, events: ak.Array) -> dict[str, Any]:
        started = time.perf_counter()
        meta = events.metadata
        process_name = meta.get("sample") or meta["dataset"]
        histogram = new_histogram()
        sign = np.sign(ak.to_numpy(events.genWeight)) if "genWeight" in events.fields else np.ones(len(events))
        xsec, total = meta.get("xsec_pb"), meta.get("events")
        norm = xsec * LUMI_PB / total if xsec and total else 1.0
        cutflow = {"all": len(events)}
        for variation, jet_scale in (("nominal", 1.0), ("jes_up", 1 + JES_SHIFT), ("jes_down", 1 - JES_SHIFT)):
            electrons, muons, jets = _objects(events, jet_scale)
            n_btag = ak.sum(jets.btagDeepFlavB > BTAG_MEDIUM, axis=1)
            selected = (ak.num(electrons) + ak.num(muons) == 1) & (ak.num(jets) >= 4) & (n_btag >= 1)
            weights = {variation: sign * norm}
            if variation == "nominal":
                cutflow["selected"] = int(ak.sum(selected))
                # b-tag scale-factor uncertainty: a per-b-tagged-jet factor (1 +- 10 %).
                weights["btag_up"] = weights["nominal"] * (1 + BTAG_SF_SHIFT) ** ak.to_numpy(n_btag)
                weights["btag_down"] = weights["nominal"] * (1 - BTAG_SF_SHIFT) ** ak.to_numpy(n_btag)
            one_b = ak.to_numpy(selected & (n_btag == 1))
            two_b = ak.to_numpy(selected & (n_btag >= 2))
            ht = ak.to_numpy(ak.sum(jets.pt, axis=1))
            mass = ak.to_numpy(_trijet_mass(jets[two_b]))
            for name, weight in weights.items():
                histogram.fill(
                    observable=ht[one_b], region="4j1b", process=process_name, variation=name, weight=weight[one_b]
                )
                histogram.fill(
                    observable=mass, region="4j2b", process=process_name, variation=name, weight=weight[two_b]
                )
        return {
            "hist": histogram,
            "cutflow": {process_name: cutflow},
            "events": len(events),
            "seconds": time.perf_counter() - started,
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def run(
    fileset: dict[str, Any],
    executor: processor.executor.ExecutorBase | None = None,
    chunksize: int = 250_000,  # benchmarks/dask_efficiency.py: 100 k-event chunks cost 10-30 % per core
) -> dict[str, Any]:
    """Run the processor over a coffea fileset; returns the accumulated output (hist, cutflow, events)."""
    import uproot

    runner = processor.Runner(
        executor=executor or processor.IterativeExecutor(),
        schema=NanoAODSchema,
        chunksize=chunksize,
        savemetrics=True,
        # Fresh per run: coffea's default cache is keyed by file name, and `af data generate` rewrites
        # files under the same names (a stale entry chunks the new file by the old entry count).
        metadata_cache={},
    )
    # uproot's own XRootD source for root:// URLs (the fsspec route fails with the xrootd 6.2 client).
    remote = any(str(url).startswith("root://") for entry in fileset.values() for url in entry["files"])
    options = {"handler": uproot.source.xrootd.XRootDSource} if remote else {}
    # Remote files: coffea traces which branches the processor reads and preloads them in one vector
    # read per chunk, instead of one request (one round trip) per branch: +33 % over a 25 ms link
    # (benchmarks/uproot_reads.py).
    extra = {"trace": trace_columns} if remote else {}
    output, metrics = runner(
        fileset, processor_instance=TtbarProcessor(), treename="Events", uproot_options=options, **extra
    )
    output["metrics"] = metrics
    return output
