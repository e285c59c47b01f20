"""The ttbar analysis of the IRIS-HEP Analysis Grand Challenge (v2), as a coffea processor.

Definitions (objects, b tagging, regions) come from analyses/definitions.py: `agc` follows the AGC
exactly, `modern` tags b jets with DeepJet. Region `4j1b` fills HT, region `4j2b` the mass of the
highest-pT trijet holding a b tag, both in 25 bins from 50 to 550 GeV (the AGC's histograms; its
fit merges them, see analyses/stats.py). Systematic variations: analyses/systematics.py. Events are
weighted by xsec * L / sum of generator weights (analyses/normalisation.py).

Every process of the fileset is on the histogram's process axis, even one without a selected event
(a statistical model built later finds all its samples). The notebook notebooks/ttbar_analysis.ipynb
runs it; benchmarks and tests reuse it.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from coffea.nanoevents.methods import vector as coffea_vector
from coffea.nanoevents.trace import trace as trace_columns

from analyses import definitions as defs
from analyses import normalisation, systematics
from analyses.normalisation import LUMI_PB
from dask_backends import data as data_lake

__all__ = [
    "LUMI_PB",
    "TtbarProcessor",
    "chunk_rng",
    "fill_events",
    "new_histogram",
    "run",
    "sample_keys",
    "write_histograms",
]

BINS = (25, 50.0, 550.0)  # the AGC's observable binning
VARIATIONS = tuple(systematics.all_variations(True))


def new_histogram(processes: list[str], variations: list[str] | tuple[str, ...] = VARIATIONS) -> hist.Hist:
    """Observable x region x process x variation, with fixed categories so empty processes stay on it."""
    return (
        hist.Hist.new.Reg(*BINS, name="observable", label="observable [GeV]")
        .StrCat(list(defs.REGIONS), name="region", label="region")
        .StrCat(list(processes), name="process", label="process")
        .StrCat(list(variations), name="variation", label="variation")
        .Weight()
    )


def sample_keys(name: str, metadata: dict[str, Any]) -> tuple[str, str]:
    """(process, variation) of a fileset entry: from its metadata, else the dataset name and nominal."""
    return metadata.get("process") or metadata.get("sample") or name, metadata.get("variation") or "nominal"


def chunk_rng(file_key: str, entry_start: int) -> np.random.Generator:
    """The random stream of one chunk (JER smearing): the same file and first entry draw the same numbers."""
    return np.random.default_rng([zlib.crc32(file_key.encode()), entry_start])


def _jets(jets: ak.Array, pt: ak.Array, btag_field: str) -> ak.Array:
    # Only the fields the definitions read, as Lorentz vectors (coffea's behaviour) for the trijet sums.
    return ak.zip(
        {
            "pt": pt,
            "eta": jets.eta,
            "phi": jets.phi,
            "mass": jets.mass,
            btag_field: jets[btag_field],
            "jetId": jets.jetId,
        },
        with_name="PtEtaPhiMLorentzVector",
        behavior=coffea_vector.behavior,
    )


def fill_events(
    histogram: hist.Hist,
    electrons: ak.Array,
    muons: ak.Array,
    jets: ak.Array,
    weights: np.ndarray,
    process: str,
    variation: str = "nominal",
    definitions: str | defs.Definitions = "agc",
    with_systematics: bool = True,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Select and fill one chunk of events; returns its cutflow (counts and weighted sums, nominal)."""
    chosen = defs.get(definitions)
    rng = rng or np.random.default_rng(0)
    electrons, muons = chosen.electrons(electrons), chosen.muons(muons)
    # Variation samples (ME_var, ...) are filled once under their own name; nominal samples get the
    # kinematic and weight variations too (as in the AGC).
    systematic_run = with_systematics and variation == "nominal"
    jet_variations = ["nominal", *systematics.JET_VARIATIONS] if systematic_run else ["nominal"]
    cutflow: dict[str, float] = {"all": len(weights), "sum_weights": float(np.sum(weights))}
    for jet_variation in jet_variations:
        selected_jets = chosen.jets(_jets(jets, systematics.jet_pt(jet_variation, jets.pt, rng), chosen.btag_field))
        masks = chosen.regions(electrons, muons, selected_jets)
        for region, mask in masks.items():
            region_jets = selected_jets[mask]
            observable = chosen.observable(region, region_jets)
            region_weights = weights[mask]
            name = variation if jet_variation == "nominal" else jet_variation
            histogram.fill(observable=observable, region=region, process=process, variation=name, weight=region_weights)
            if jet_variation != "nominal":
                continue
            cutflow[region] = int(mask.sum())
            cutflow[f"{region}_weighted"] = float(region_weights.sum())
            if not systematic_run:
                continue
            factors = systematics.btag_weights(region_jets)
            if process in systematics.SCALE_VARIATION_PROCESSES:
                factors.update(systematics.scale_weights(len(region_weights)))
            for weight_name, factor in factors.items():
                histogram.fill(
                    observable=observable,
                    region=region,
                    process=process,
                    variation=weight_name,
                    weight=region_weights * factor,
                )
    return cutflow


class TtbarProcessor(processor.ProcessorABC):
    """Fills HT (4j1b) and trijet mass (4j2b) per region, process and variation."""

    def __init__(
        self,
        processes: list[str],
        definitions: str = "agc",
        with_systematics: bool = True,
        normalisation_mode: str = "weights",
        lumi_pb: float = LUMI_PB,
    ) -> None:
        self.processes = list(processes)
        self.definitions = defs.get(definitions).name
        self.with_systematics = with_systematics
        self.normalisation_mode = normalisation_mode
        self.lumi_pb = lumi_pb

    def process(self, events: ak.Array) -> dict[str, Any]:
        started = time.perf_counter()
        meta = dict(events.metadata)
        process, variation = sample_keys(meta["dataset"], meta)
        histogram = new_histogram(self.processes, systematics.all_variations(self.with_systematics))
        gen_weight = ak.to_numpy(events.genWeight) if "genWeight" in events.fields else np.ones(len(events))
        weights = normalisation.event_weights(gen_weight, meta, self.lumi_pb, self.normalisation_mode)
        # Reproducible jet-resolution smearing: one random stream per chunk, keyed by the ROOT file's
        # UUID (the same file through the cache, the origin or the local disk smears the same).
        key = meta.get("fileuuid") or Path(str(meta.get("filename", ""))).name
        cutflow = fill_events(
            histogram,
            events.Electron,
            events.Muon,
            events.Jet,
            weights,
            process,
            variation,
            self.definitions,
            self.with_systematics,
            chunk_rng(str(key), int(meta.get("entrystart", 0))),
        )
        return {
            "hist": histogram,
            "cutflow": {meta["dataset"]: cutflow},
            "events": len(events),
            "seconds": time.perf_counter() - started,
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def _variations_by_process(fileset: dict[str, Any], with_systematics: bool) -> dict[str, list[str]]:
    sample_variations: dict[str, set[str]] = {}
    for name, entry in fileset.items():
        process, variation = sample_keys(name, entry.get("metadata") or {})
        sample_variations.setdefault(process, set())
        if variation != "nominal":
            sample_variations[process].add(variation)
    return {p: systematics.variations_for(p, v, with_systematics) for p, v in sample_variations.items()}


def run(
    fileset: dict[str, Any],
    executor: processor.executor.ExecutorBase | None = None,
    chunksize: int = 250_000,  # benchmarks/dask_efficiency.py: 100 k-event chunks cost 10-30 % per core
    definitions: str = "agc",
    with_systematics: bool = True,
    normalisation_mode: str = "weights",
    preload: bool | None = None,
) -> dict[str, Any]:
    """Run the processor over a coffea fileset; returns the accumulated output.

    preload: trace the processor's branches and read each chunk's in one vector read; None (the
    default) preloads root:// files unless all are read through a cache on this machine.

    Keys: hist (every process of the fileset on its axis), variations (process -> the variations it
    has, for writing and fitting), cutflow (dataset -> counts), events, seconds, metrics.
    """
    definitions = defs.get(definitions).name
    # root:// URLs: the data lake's reader (uproot's XRootD source that fails over from a cache that
    # stops answering to the origin, dask_backends.failover), on Dask workers too.
    remote = any(str(url).startswith("root://") for entry in fileset.values() for url in entry["files"])
    options = data_lake.uproot_options() if remote else {}
    fileset = normalisation.ensure_weight_sums(fileset, options)
    variations = _variations_by_process(fileset, with_systematics)
    processes = list(variations)
    runner = processor.Runner(
        executor=executor or processor.IterativeExecutor(),
        schema=NanoAODSchema,
        chunksize=chunksize,
        savemetrics=True,
        # Fresh per run: coffea's default cache is keyed by file name, and `af data generate` rewrites
        # files under the same names (a stale entry chunks the new file by the old entry count).
        metadata_cache={},
    )
    instance = TtbarProcessor(processes, definitions, with_systematics, normalisation_mode)
    # Remote files: coffea traces which branches the processor reads and preloads them in one vector
    # read per chunk, instead of one request (one round trip) per branch: +33 % over a 25 ms link
    # (benchmarks/uproot_reads.py). Not through a cache on this machine: its round trips are short
    # whatever the origin's distance, and preloading made warm runs slower there (xcache_sweep.py --warm-check).
    if preload is None:
        urls = [str(url) for entry in fileset.values() for url in entry["files"]]
        preload = remote and not all(data_lake.through_local_cache(url) for url in urls)
    extra = {"trace": trace_columns} if preload else {}
    output, metrics = runner(fileset, processor_instance=instance, treename="Events", uproot_options=options, **extra)
    if "hist" not in output:  # no chunk at all (every file empty): still one histogram with every process
        output = {"hist": new_histogram(processes, systematics.all_variations(with_systematics)), "cutflow": {}}
        output.update(events=0, seconds=0.0)
    output["variations"] = variations
    output["definitions"] = definitions
    output["metrics"] = metrics
    return output


def write_histograms(
    histogram: hist.Hist, variations: dict[str, list[str]], path: str, pseudodata: hist.Hist | None = None
) -> list[str]:
    """Write `{region}_{process}_{variation}` histograms (the AGC's names) for every process and the
    variations it has, plus `{region}_pseudodata_nominal` when given; returns the names written."""
    import uproot

    names = []
    with uproot.recreate(path) as out:
        for region in defs.REGIONS:
            for process, names_of_process in variations.items():
                for variation in names_of_process:
                    key = f"{region}_{process}_{variation}"
                    out[key] = histogram[:, region, process, variation]
                    names.append(key)
            if pseudodata is not None:
                out[f"{region}_pseudodata_nominal"] = pseudodata[:, region]
                names.append(f"{region}_pseudodata_nominal")
    return names
