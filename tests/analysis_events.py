"""Hand-made NanoAOD-like events for the analysis tests: records in memory, or a small ROOT file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

JET_DEFAULTS = {"pt": 50.0, "eta": 0.0, "phi": 0.0, "mass": 10.0, "btagCSVV2": 0.1, "btagDeepFlavB": 0.05, "jetId": 6}
MUON_DEFAULTS = {"pt": 40.0, "eta": 0.0, "phi": 0.0, "mass": 0.106, "tightId": True, "sip3d": 1.0}
MUON_DEFAULTS |= {"pfRelIso04_all": 0.05, "charge": 1}
ELECTRON_DEFAULTS = {"pt": 40.0, "eta": 0.0, "phi": 0.0, "mass": 0.0005, "cutBased": 4, "sip3d": 1.0}
ELECTRON_DEFAULTS |= {"pfRelIso03_all": 0.05, "charge": -1}
DTYPES = {"jetId": np.int32, "cutBased": np.int32, "charge": np.int32, "tightId": np.bool_}


def _collection(events: list[dict[str, Any]], key: str, defaults: dict[str, Any]) -> ak.Array:
    rows = [[{**defaults, **obj} for obj in event.get(key, [])] for event in events]
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = [obj for r in rows for obj in r]
    fields = {}
    for name in defaults:
        dtype = DTYPES.get(name, np.float32)
        fields[name] = ak.unflatten(np.array([obj[name] for obj in flat], dtype=dtype), counts)
    return ak.zip(fields)


def collections(events: list[dict[str, Any]]) -> tuple[ak.Array, ak.Array, ak.Array]:
    """(electrons, muons, jets) of events given as dicts: {"jets": [{"pt": ..}], "muons": [..], ...}."""
    return (
        _collection(events, "electrons", ELECTRON_DEFAULTS),
        _collection(events, "muons", MUON_DEFAULTS),
        _collection(events, "jets", JET_DEFAULTS),
    )


def write_file(path: Path, events: list[dict[str, Any]]) -> Path:
    """A NanoAOD-named ROOT file (nJet, Jet_pt, genWeight, ...) that coffea's NanoAODSchema reads."""
    import uproot

    electrons, muons, jets = collections(events)
    branches = {
        "run": np.ones(len(events), dtype=np.uint32),
        "luminosityBlock": np.ones(len(events), dtype=np.uint32),
        "event": np.arange(1, len(events) + 1, dtype=np.uint64),
        "genWeight": np.array([e.get("genWeight", 1.0) for e in events], dtype=np.float32),
        "Jet": jets,
        "Muon": muons,
        "Electron": electrons,
    }
    with uproot.recreate(path) as out:
        out.mktree(
            "Events",
            {k: (ak.type(v) if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()},
            counter_name=lambda c: "n" + c,
            field_name=lambda c, f: f"{c}_{f}",
        )
        out["Events"].extend(branches)
    return path


def four_jets(csv: tuple[float, ...] = (0.9, 0.1, 0.1, 0.1), pts: tuple[float, ...] = (100, 80, 60, 40), **extra):
    """Jets at distinct phi with given CSVv2 scores and pT; extra fields apply to every jet."""
    return [
        {"pt": pt, "btagCSVV2": score, "phi": 0.8 * i, "eta": 0.3 * i, **extra}
        for i, (pt, score) in enumerate(zip(pts, csv, strict=True))
    ]
