"""Synthetic NanoAOD events: ttbar-like (semileptonic top pairs) and background-like (W+jets).

Tops decay as t -> b W; one W decays to a lepton and a neutrino, the other to two quarks, so the
trijet mass peaks near the top mass and the b-tag multiplicity separates signal from background.
Jets get a 10 % resolution, extra radiation jets fall steeply in pT, and branch names and types
follow CMS NanoAOD (nJet, Jet_pt, Jet_btagDeepFlavB, Jet_btagCSVV2, Jet_jetId, Muon_tightId,
Muon_sip3d, MET_pt, genWeight, ...): every branch the AGC's and the modern definitions read.

The ttbar variation samples of the AGC (`ttbar_scaleup`, `ttbar_scaledown`, `ttbar_ME_var`,
`ttbar_PS_var`) are the same process generated with other settings: more or less radiation, a
harder top pT spectrum with NLO-like negative weights, a wider jet response.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import vector

TOP_MASS = 172.5
W_MASS = 80.4
B_MASS = 4.8
MUON_MASS = 0.10566
ELECTRON_MASS = 0.000511
JET_PT_MIN = 15.0  # NanoAOD stores jets above 15 GeV
# Appended only: a sample's index seeds its random stream (same seed, same files).
SAMPLES = ("ttbar", "wjets", "ttbar_scaleup", "ttbar_scaledown", "ttbar_ME_var", "ttbar_PS_var")
# Generator settings of the ttbar samples; the variations change one or two of them.
TTBAR_NOMINAL = {"extra_jets": 1.2, "radiation_pt": 22.0, "top_pt": 90.0, "resolution": 0.10, "negative": 0.0}
# W+jets is generated with a filter (W + at least two jets, harder radiation), as multi-jet analyses
# use filtered samples; its cross section is the inclusive one times WJETS_FILTER_EFFICIENCY.
WJETS = {"extra_jets": 2.2, "min_jets": 2, "radiation_pt": 30.0, "resolution": 0.10}
WJETS_FILTER_EFFICIENCY = 0.05
TTBAR_VARIATIONS = {
    "scaleup": {"extra_jets": 1.5, "radiation_pt": 24.0},
    "scaledown": {"extra_jets": 0.95, "radiation_pt": 20.0},
    "ME_var": {"top_pt": 100.0, "negative": 0.2},  # an NLO generator: harder tops, some negative weights
    "PS_var": {"resolution": 0.13, "extra_jets": 1.35},  # another shower: wider response, more jets
}


def process_and_variation(sample: str) -> tuple[str, str]:
    """`ttbar_ME_var` -> ("ttbar", "ME_var"); a nominal sample -> (sample, "nominal")."""
    for variation in TTBAR_VARIATIONS:
        if sample == f"ttbar_{variation}":
            return "ttbar", variation
    return sample, "nominal"


def _decay(parent: vector.MomentumNumpy4D, m1: np.ndarray | float, m2: np.ndarray | float, rng: np.random.Generator):
    """Isotropic two-body decay in the parent's rest frame, boosted to the lab."""
    n = len(parent)
    mass = parent.mass
    p_star = np.sqrt(np.clip((mass**2 - (m1 + m2) ** 2) * (mass**2 - (m1 - m2) ** 2), 0, None)) / (2 * mass)
    cos_theta = rng.uniform(-1, 1, n)
    sin_theta = np.sqrt(1 - cos_theta**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    px, py, pz = p_star * sin_theta * np.cos(phi), p_star * sin_theta * np.sin(phi), p_star * cos_theta
    first = vector.array({"px": px, "py": py, "pz": pz, "mass": np.broadcast_to(m1, n)})
    second = vector.array({"px": -px, "py": -py, "pz": -pz, "mass": np.broadcast_to(m2, n)})
    return first.boost_p4(parent), second.boost_p4(parent)


def _resonance(n: int, mass: float, width: float, pt_scale: float, rng: np.random.Generator):
    masses = np.clip(rng.standard_cauchy(n) * width / 2 + mass, mass - 5 * width, mass + 5 * width)
    return vector.array(
        {
            "pt": rng.exponential(pt_scale, n) + rng.uniform(0, 20, n),
            "eta": rng.normal(0, 1.4, n),
            "phi": rng.uniform(-np.pi, np.pi, n),
            "mass": masses,
        }
    )


def _radiation(counts: np.ndarray, rng: np.random.Generator, pt_scale: float = 22.0) -> dict[str, np.ndarray]:
    total = int(counts.sum())
    return {
        "pt": JET_PT_MIN + rng.exponential(pt_scale, total),
        "eta": rng.normal(0, 1.8, total),
        "phi": rng.uniform(-np.pi, np.pi, total),
        "flavour": np.where(rng.uniform(size=total) < 0.04, 5, 0),
    }


def _btag(flavour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # DeepJet-like discriminant: b jets pile up near 1, light jets near 0 (medium WP 0.2783).
    return np.where(flavour == 5, rng.beta(5, 1.2, len(flavour)), rng.beta(0.6, 8, len(flavour))).astype(np.float32)


def _btag_csv(flavour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # CSVv2-like discriminant (the AGC's, threshold 0.5): broader than DeepJet, light jets leak more.
    return np.where(flavour == 5, rng.beta(4, 1.3, len(flavour)), rng.beta(0.9, 5, len(flavour))).astype(np.float32)


def _jet_id(n: int, rng: np.random.Generator) -> np.ndarray:
    # NanoAOD jetId bits: 2 tight, 4 tight-lepton-veto. Most jets pass both (6), some fail the veto (2).
    return rng.choice(np.array([6, 2, 0], dtype=np.int32), n, p=[0.93, 0.05, 0.02])


def _jets(
    quark_parts: list,
    counts_extra: np.ndarray,
    n: int,
    rng: np.random.Generator,
    radiation_pt: float = 22.0,
    resolution: float = 0.10,
) -> ak.Array:
    """Jets per event: the listed quarks (lab-frame vectors with a flavour) plus radiation jets."""

    def stacked(values: list[np.ndarray]) -> ak.Array:
        regular = np.stack(values, axis=1) if values else np.zeros((n, 0))
        return ak.from_regular(ak.Array(regular), axis=1)

    hard = {
        "pt": stacked([np.asarray(q.pt) for q, _ in quark_parts]),
        "eta": stacked([np.asarray(q.eta) for q, _ in quark_parts]),
        "phi": stacked([np.asarray(q.phi) for q, _ in quark_parts]),
        "flavour": stacked([np.full(n, f) for _, f in quark_parts]),
    }
    extra = _radiation(counts_extra, rng, radiation_pt)
    extra_jagged = {k: ak.unflatten(v, counts_extra) for k, v in extra.items()}
    merged = {k: ak.concatenate([hard[k], extra_jagged[k]], axis=1) for k in hard}
    flat_pt = ak.flatten(merged["pt"]).to_numpy() * rng.normal(1.0, resolution, int(ak.sum(ak.num(merged["pt"]))))
    counts = ak.num(merged["pt"]).to_numpy()
    pt = ak.unflatten(flat_pt.astype(np.float32), counts)
    flavour = ak.unflatten(ak.flatten(merged["flavour"]).to_numpy().astype(np.int32), counts)
    eta = ak.unflatten(np.clip(ak.flatten(merged["eta"]).to_numpy(), -4.7, 4.7).astype(np.float32), counts)
    phi = ak.unflatten(ak.flatten(merged["phi"]).to_numpy().astype(np.float32), counts)
    flat_flavour = ak.flatten(flavour).to_numpy()
    mass = ak.unflatten((flat_pt * rng.uniform(0.08, 0.16, len(flat_pt))).astype(np.float32), counts)
    btag = ak.unflatten(_btag(flat_flavour, rng), counts)
    btag_csv = ak.unflatten(_btag_csv(flat_flavour, rng), counts)
    jet_id = ak.unflatten(_jet_id(len(flat_flavour), rng), counts)
    jets = ak.zip(
        {
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "btagDeepFlavB": btag,
            "btagCSVV2": btag_csv,
            "hadronFlavour": flavour,
            "jetId": jet_id,
        }
    )
    keep = (jets.pt > JET_PT_MIN) & (abs(jets.eta) < 4.7)
    jets = jets[keep]
    return jets[ak.argsort(jets.pt, ascending=False)]


def _leptons(lepton: vector.MomentumNumpy4D, is_muon: np.ndarray, rng: np.random.Generator) -> tuple[ak.Array, ...]:
    n = len(is_muon)
    charge = rng.choice(np.array([-1, 1], dtype=np.int32), n)
    fields = {
        "pt": np.asarray(lepton.pt, dtype=np.float32),
        "eta": np.clip(np.asarray(lepton.eta), -3, 3).astype(np.float32),
        "phi": np.asarray(lepton.phi, dtype=np.float32),
        "charge": charge,
    }
    counts_mu = (is_muon & (fields["pt"] > 3)).astype(np.int64)
    counts_el = (~is_muon & (fields["pt"] > 5)).astype(np.int64)

    def build(counts: np.ndarray, mass: float, iso_name: str, id_fields: dict) -> ak.Array:
        mask = counts.astype(bool)
        size = int(mask.sum())
        record = {k: ak.unflatten(v[mask], counts) for k, v in fields.items()}
        record["mass"] = ak.unflatten(np.full(size, mass, dtype=np.float32), counts)
        record[iso_name] = ak.unflatten(rng.exponential(0.05, size).astype(np.float32), counts)
        # 3D impact-parameter significance: prompt leptons mostly below the AGC's cut of 4.
        record["sip3d"] = ak.unflatten(rng.exponential(1.3, size).astype(np.float32), counts)
        for name, values in id_fields.items():
            record[name] = ak.unflatten(values(size), counts)
        return ak.zip(record)

    muons = build(counts_mu, MUON_MASS, "pfRelIso04_all", {"tightId": lambda k: rng.uniform(size=k) < 0.95})
    electrons = build(
        counts_el,
        ELECTRON_MASS,
        "pfRelIso03_all",
        {"cutBased": lambda k: rng.choice(np.array([2, 3, 4], dtype=np.int32), k, p=[0.1, 0.15, 0.75])},
    )
    return muons, electrons


def generate(sample: str, n: int, rng: np.random.Generator) -> dict[str, ak.Array | np.ndarray]:
    """n events of a sample, as the branches of a NanoAOD Events tree (collections as records)."""
    if sample not in SAMPLES:
        raise ValueError(f"unknown sample kind {sample!r}; known: {', '.join(SAMPLES)}")
    is_muon = rng.uniform(size=n) < 0.5
    process, variation = process_and_variation(sample)
    settings = {**(TTBAR_NOMINAL if process == "ttbar" else WJETS), **TTBAR_VARIATIONS.get(variation, {})}
    if process == "ttbar":
        top_had = _resonance(n, TOP_MASS, 1.4, settings["top_pt"], rng)
        top_lep = _resonance(n, TOP_MASS, 1.4, settings["top_pt"], rng)
        b_had, w_had = _decay(top_had, B_MASS, np.clip(rng.normal(W_MASS, 2.1, n), 60, 100), rng)
        q1, q2 = _decay(w_had, 0.0, 0.0, rng)
        b_lep, w_lep = _decay(top_lep, B_MASS, np.clip(rng.normal(W_MASS, 2.1, n), 60, 100), rng)
        lepton_mass = np.where(is_muon, MUON_MASS, ELECTRON_MASS)
        lepton, neutrino = _decay(w_lep, lepton_mass, 0.0, rng)
        quarks = [(b_had, 5), (q1, 0), (q2, 0), (b_lep, 5)]
        extra = rng.poisson(settings["extra_jets"], n)
        negative = settings["negative"]
        weight = rng.choice(np.array([1.0, -1.0], dtype=np.float32), n, p=[1 - negative, negative])
    else:
        w = _resonance(n, W_MASS, 2.1, 40.0, rng)
        lepton_mass = np.where(is_muon, MUON_MASS, ELECTRON_MASS)
        lepton, neutrino = _decay(w, lepton_mass, 0.0, rng)
        quarks = []
        # W + at least two jets (as generated for a multi-jet selection): enough events reach 4j1b
        # for a smooth background shape.
        extra = WJETS["min_jets"] + rng.poisson(settings["extra_jets"], n)
        weight = rng.choice(np.array([1.0, -1.0], dtype=np.float32), n, p=[0.85, 0.15]) * 25.0
    jets = _jets(quarks, extra, n, rng, settings["radiation_pt"], settings["resolution"])
    muons, electrons = _leptons(lepton, is_muon, rng)
    met_x = np.asarray(neutrino.px) + rng.normal(0, 15, n)
    met_y = np.asarray(neutrino.py) + rng.normal(0, 15, n)
    return {
        "run": np.full(n, 1, dtype=np.uint32),
        "luminosityBlock": (np.arange(n) // 1000 + 1).astype(np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64),
        "genWeight": weight,
        "MET_pt": np.hypot(met_x, met_y).astype(np.float32),
        "MET_phi": np.arctan2(met_y, met_x).astype(np.float32),
        "Jet": jets,
        "Muon": muons,
        "Electron": electrons,
    }
