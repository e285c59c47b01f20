"""Systematic variations of the ttbar analysis, as the AGC v2 defines them.

  pt_scale_up/down   jet-energy scale: every jet's pT times 1.03 / 0.97 (pT only; mass, eta, phi kept)
  pt_res_up          jet-energy resolution: every jet's pT times a factor drawn from N(1, 0.05)
  btag_var_{i}_up/down  i = 0..3: event weight 1 +- 0.075 * pT(i-th leading jet) / 50 GeV
  scale_var_up/down  W+jets only: event weight 1.03 / 0.97
  scaleup, scaledown, ME_var, PS_var  ttbar only: separate samples (the catalogue's `variation`)

Kinematic and weight variations are filled for nominal samples only, as in the AGC.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

JES_SHIFT = 0.03
JER_WIDTH = 0.05
BTAG_SLOPE = 0.075  # per 50 GeV of the jet's pT
WJETS_SCALE_SHIFT = 0.03
JET_VARIATIONS = ("pt_scale_up", "pt_scale_down", "pt_res_up")
BTAG_VARIATIONS = tuple(f"btag_var_{i}_{d}" for i in range(4) for d in ("up", "down"))
SCALE_VARIATIONS = ("scale_var_up", "scale_var_down")
SAMPLE_VARIATIONS = ("scaleup", "scaledown", "ME_var", "PS_var")
SCALE_VARIATION_PROCESSES = ("wjets",)


def jet_pt(variation: str, pt: ak.Array, rng: np.random.Generator) -> ak.Array:
    """Jet pT under a kinematic variation ("nominal" returns pt unchanged)."""
    if variation == "nominal":
        return pt
    if variation == "pt_scale_up":
        return pt * (1 + JES_SHIFT)
    if variation == "pt_scale_down":
        return pt * (1 - JES_SHIFT)
    if variation == "pt_res_up":
        flat = ak.to_numpy(ak.flatten(pt))
        factors = rng.normal(1.0, JER_WIDTH, len(flat))
        return ak.unflatten(flat * factors, ak.num(pt))
    raise ValueError(f"unknown jet variation {variation!r}; known: nominal, {', '.join(JET_VARIATIONS)}")


def btag_weights(jets: ak.Array) -> dict[str, np.ndarray]:
    """Weight factors of the four b-tag nuisance parameters, from the four leading jets' pT."""
    factors = {}
    for i in range(4):
        shift = BTAG_SLOPE * ak.to_numpy(jets.pt[:, i]) / 50.0
        factors[f"btag_var_{i}_up"] = 1.0 + shift
        factors[f"btag_var_{i}_down"] = 1.0 - shift
    return factors


def scale_weights(n: int) -> dict[str, np.ndarray]:
    return {
        "scale_var_up": np.full(n, 1.0 + WJETS_SCALE_SHIFT),
        "scale_var_down": np.full(n, 1.0 - WJETS_SCALE_SHIFT),
    }


def variations_for(process: str, sample_variations: set[str] | frozenset[str], systematics: bool) -> list[str]:
    """The variations a process has: nominal, then (with systematics) its kinematic, weight and sample ones."""
    names = ["nominal"]
    if systematics:
        names += [*JET_VARIATIONS, *BTAG_VARIATIONS]
        if process in SCALE_VARIATION_PROCESSES:
            names += SCALE_VARIATIONS
        names += [v for v in SAMPLE_VARIATIONS if v in sample_variations]
    return names


def all_variations(systematics: bool) -> list[str]:
    if not systematics:
        return ["nominal"]
    return ["nominal", *JET_VARIATIONS, *BTAG_VARIATIONS, *SCALE_VARIATIONS, *SAMPLE_VARIATIONS]
