"""Per-sample normalisation: cross-section x luminosity / sum of generator weights.

A sample with negative generator weights has fewer effective events than entries, so the event
weight is genWeight * xsec * L / sum(genWeight) (mode `weights`) or sign(genWeight) * xsec * L /
sum(sign(genWeight)) (mode `signs`), never 1 / number of events. The sums come from the dataset
catalogue (`af data` records them per file; the fileset's metadata holds the sums of the chosen
files); `ensure_weight_sums` computes them from the files for a fileset that lacks them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LUMI_PB = 3378.0  # the AGC's integrated luminosity (CMS 2015), pb^-1
SUM_KEYS = {"weights": "genWeight_sum", "signs": "genWeight_sign_sum"}


def _check_mode(mode: str) -> str:
    if mode not in SUM_KEYS:
        raise ValueError(f"unknown normalisation mode {mode!r}; known: {', '.join(SUM_KEYS)}")
    return SUM_KEYS[mode]


def event_weights(
    gen_weight: np.ndarray, metadata: dict[str, Any], lumi_pb: float = LUMI_PB, mode: str = "weights"
) -> np.ndarray:
    """Per-event weights of one chunk. Samples without a cross section (data, unnormalised samples) count 1
    per event; pass ones as gen_weight for files without a genWeight branch."""
    key = _check_mode(mode)
    xsec = metadata.get("xsec_pb")
    if not xsec:
        return np.ones(len(gen_weight))
    total = metadata.get(key)
    name = metadata.get("sample") or metadata.get("dataset")
    if total is None:
        raise ValueError(f"sample {name!r} has no {key} in its metadata; run ensure_weight_sums(fileset) first")
    if total <= 0:
        raise ValueError(f"sample {name!r}: {key} is {total}, so it cannot be normalised")
    per_event = np.asarray(gen_weight, dtype=np.float64)
    if mode == "signs":
        per_event = np.sign(per_event)
    return per_event * (xsec * lumi_pb / total)


def ensure_weight_sums(fileset: dict[str, Any], uproot_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the fileset whose samples all carry genWeight sums (read from the files where missing)."""
    import uproot

    result = {}
    for name, entry in fileset.items():
        meta = dict(entry.get("metadata") or {})
        if not all(key in meta for key in SUM_KEYS.values()):
            sums = dict.fromkeys(SUM_KEYS.values(), 0.0)
            for url, tree in entry["files"].items():
                with uproot.open(url, **(uproot_options or {})) as opened:
                    events = opened[tree]
                    if "genWeight" not in events:
                        weights = np.ones(events.num_entries)
                    else:
                        weights = events["genWeight"].array(library="np").astype(np.float64)
                sums["genWeight_sum"] += float(weights.sum())
                sums["genWeight_sign_sum"] += float(np.sign(weights).sum())
            meta.update(sums)
        result[name] = {**entry, "metadata": meta}
    return result
