"""Object and region definitions of the ttbar analysis, selectable by name: `agc` and `modern`.

`agc` follows the IRIS-HEP Analysis Grand Challenge v2 ttbar pipeline (CMS 2015 Open Data):
  electrons  pT > 30 GeV, |eta| < 2.1, cutBased == 4 (tight), sip3d < 4
  muons      pT > 30 GeV, |eta| < 2.1, tightId, sip3d < 4, pfRelIso04_all < 0.15
  jets       pT > 30 GeV, |eta| < 2.4, tight jet ID with lepton veto (jetId bit 2, value 4)
  b tag      btagCSVV2 with threshold 0.5: region 4j1b counts tags with >= 0.5 and asks for exactly
             one, region 4j2b counts tags with > 0.5 and asks for two or more (as the AGC does)
  regions    exactly one lepton and at least four jets, then 4j1b or 4j2b

`modern` keeps the AGC's leptons and jets but tags b jets with DeepJet (`btagDeepFlavB`) at its
medium working point (0.2783, CMS Run 2 UL), counting tags with > in both regions.

The functions take plain awkward records (electrons, muons, jets with NanoAOD field names), so the
coffea processor and the unit tests (hand-made events) run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

REGIONS = ("4j1b", "4j2b")
JET_ID_TIGHT_LEPTON_VETO = 4  # NanoAOD jetId bit 2 (coffea's Jet.isTightLeptonVeto)


@dataclass(frozen=True)
class Definitions:
    name: str
    btag_field: str
    btag_threshold: float
    one_b_inclusive: bool  # the AGC counts 4j1b tags with >= and 4j2b tags with >
    jet_pt_min: float = 30.0
    jet_eta_max: float = 2.4
    jet_id_bit: int = JET_ID_TIGHT_LEPTON_VETO
    lepton_pt_min: float = 30.0
    lepton_eta_max: float = 2.1
    sip3d_max: float = 4.0
    electron_cut_based: int = 4  # tight
    muon_iso_max: float = 0.15

    @property
    def jet_fields(self) -> tuple[str, ...]:
        return ("pt", "eta", "phi", "mass", self.btag_field, "jetId")

    def electrons(self, electrons: ak.Array) -> ak.Array:
        return electrons[
            (electrons.pt > self.lepton_pt_min)
            & (abs(electrons.eta) < self.lepton_eta_max)
            & (electrons.cutBased == self.electron_cut_based)
            & (electrons.sip3d < self.sip3d_max)
        ]

    def muons(self, muons: ak.Array) -> ak.Array:
        return muons[
            (muons.pt > self.lepton_pt_min)
            & (abs(muons.eta) < self.lepton_eta_max)
            & muons.tightId
            & (muons.sip3d < self.sip3d_max)
            & (muons.pfRelIso04_all < self.muon_iso_max)
        ]

    def jets(self, jets: ak.Array) -> ak.Array:
        """Jets passing pT, |eta| and jet ID; `jets.pt` already carries any energy-scale variation."""
        return jets[
            (jets.pt > self.jet_pt_min)
            & (abs(jets.eta) < self.jet_eta_max)
            & ((jets.jetId & self.jet_id_bit) == self.jet_id_bit)
        ]

    def btag(self, jets: ak.Array) -> ak.Array:
        return jets[self.btag_field]

    def regions(self, electrons: ak.Array, muons: ak.Array, jets: ak.Array) -> dict[str, np.ndarray]:
        """Event masks of 4j1b and 4j2b from selected objects."""
        score = self.btag(jets)
        tagged_1b = score >= self.btag_threshold if self.one_b_inclusive else score > self.btag_threshold
        base = (ak.num(electrons) + ak.num(muons) == 1) & (ak.num(jets) >= 4)
        one_b = base & (ak.sum(tagged_1b, axis=1) == 1)
        two_b = base & (ak.sum(score > self.btag_threshold, axis=1) >= 2)
        return {"4j1b": ak.to_numpy(one_b), "4j2b": ak.to_numpy(two_b)}

    def trijet_mass(self, jets: ak.Array) -> np.ndarray:
        """Mass of the highest-pT three-jet combination holding at least one b-tagged jet (4j2b)."""
        trijet = ak.combinations(jets, 3, fields=["j1", "j2", "j3"])
        p4 = trijet.j1 + trijet.j2 + trijet.j3
        score = np.maximum(self.btag(trijet.j1), np.maximum(self.btag(trijet.j2), self.btag(trijet.j3)))
        p4 = p4[score > self.btag_threshold]
        best = ak.argmax(p4.pt, axis=1, keepdims=True)
        return ak.to_numpy(ak.flatten(p4[best].mass))

    def observable(self, region: str, jets: ak.Array) -> np.ndarray:
        """HT in 4j1b, trijet mass in 4j2b (jets of the region's events)."""
        if region == "4j1b":
            return ak.to_numpy(ak.sum(jets.pt, axis=1))
        return self.trijet_mass(jets)


AGC = Definitions(name="agc", btag_field="btagCSVV2", btag_threshold=0.5, one_b_inclusive=True)
MODERN = Definitions(name="modern", btag_field="btagDeepFlavB", btag_threshold=0.2783, one_b_inclusive=False)
DEFINITIONS = {d.name: d for d in (AGC, MODERN)}


def get(name: str | Definitions) -> Definitions:
    """A definition set by name; a clear error names the known ones."""
    if isinstance(name, Definitions):
        return name
    try:
        return DEFINITIONS[name]
    except KeyError:
        raise ValueError(f"unknown definition set {name!r}; known: {', '.join(DEFINITIONS)}") from None
