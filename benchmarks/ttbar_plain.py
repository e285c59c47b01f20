"""The ttbar analysis without coffea's NanoEvents and Runner: uproot + awkward only, one process.

The benchmarks' floor for coffea's and the facility's overhead. The selection itself is the
analysis's own (`analyses.ttbar.fill_events` on plain awkward records, as its unit tests call it),
so both sides do the same work and cannot drift apart: this module only reads the branches the
selection uses with `uproot` and hands them over in the chunks coffea's Runner would make, seeded
the way `TtbarProcessor` seeds each chunk (the JER smearing draws the same numbers). `run` returns
the same histogram as `analyses.ttbar.run` at the same chunk size (checked by
benchmarks.dask_efficiency).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import awkward as ak
import uproot

from analyses import definitions, normalisation, systematics, ttbar

ELECTRON_FIELDS = ("pt", "eta", "cutBased", "sip3d")
MUON_FIELDS = ("pt", "eta", "tightId", "sip3d", "pfRelIso04_all")


def branches(definition: str = "agc") -> list[str]:
    """The NanoAOD branches the selection of a definition set reads."""
    jet_fields = definitions.get(definition).jet_fields
    return [
        *(f"Electron_{f}" for f in ELECTRON_FIELDS),
        *(f"Muon_{f}" for f in MUON_FIELDS),
        *(f"Jet_{f}" for f in jet_fields),
        "genWeight",
    ]


BRANCHES = branches("agc")


def chunks(entries: int, chunksize: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each chunk as coffea's Runner splits a file: evenly, close to `chunksize`."""
    if entries == 0:
        return
    # coffea.processor.executor.FileMeta.chunks without dynamic chunking.
    step = math.ceil(entries / max(round(entries / chunksize), 1))
    for start in range(0, entries, step):
        yield start, min(entries, start + step)


def _collection(arrays: ak.Array, prefix: str, fields: tuple[str, ...]) -> ak.Array:
    return ak.zip({field: arrays[f"{prefix}_{field}"] for field in fields})


def run(
    fileset: dict[str, Any],
    chunksize: int = 250_000,
    definition: str = "agc",
    with_systematics: bool = True,
    uproot_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ttbar histograms of a coffea-style fileset, in this process; same output keys as analyses.ttbar.run."""
    started, events = time.perf_counter(), 0
    fileset = normalisation.ensure_weight_sums(fileset, uproot_options)
    keys = {name: ttbar.sample_keys(name, entry.get("metadata") or {}) for name, entry in fileset.items()}
    histogram = ttbar.new_histogram(
        list(dict.fromkeys(p for p, _ in keys.values())), systematics.all_variations(with_systematics)
    )
    jet_fields = definitions.get(definition).jet_fields
    for name, entry in fileset.items():
        meta = entry["metadata"]
        process, variation = keys[name]
        for url, tree_name in entry["files"].items():
            with uproot.open(url, **(uproot_options or {})) as file:
                tree = file[tree_name]
                uuid = str(file.file.uuid)  # what coffea puts into the chunk's metadata as fileuuid
                for start, stop in chunks(tree.num_entries, chunksize):
                    arrays = tree.arrays(branches(definition), entry_start=start, entry_stop=stop)
                    weights = normalisation.event_weights(ak.to_numpy(arrays.genWeight), meta)
                    ttbar.fill_events(
                        histogram,
                        _collection(arrays, "Electron", ELECTRON_FIELDS),
                        _collection(arrays, "Muon", MUON_FIELDS),
                        _collection(arrays, "Jet", jet_fields),
                        weights,
                        process,
                        variation,
                        definition,
                        with_systematics,
                        ttbar.chunk_rng(uuid, start),
                    )
                    events += stop - start
    return {"hist": histogram, "events": events, "seconds": time.perf_counter() - started}
