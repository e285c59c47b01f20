"""The `agc` and `modern` definitions and the AGC systematics on small hand-made events: expected
region counts, observables and weights worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from analyses import definitions, systematics, ttbar
from tests.analysis_events import collections, four_jets

pytestmark = pytest.mark.no_facility

MUON = {"muons": [{}]}
# name -> (event, expected AGC region or None)
EVENTS = {
    "one_b": ({**MUON, "jets": four_jets()}, "4j1b"),
    "two_b": ({**MUON, "jets": four_jets((0.9, 0.6, 0.1, 0.1))}, "4j2b"),
    "tag_at_threshold": ({**MUON, "jets": four_jets((0.5, 0.1, 0.1, 0.1))}, "4j1b"),  # >= 0.5 counts for 4j1b
    # 0.5 counts for 4j1b (two tags, so not exactly one) but not for 4j2b (> 0.5: one tag): neither
    "threshold_and_tag": ({**MUON, "jets": four_jets((0.5, 0.9, 0.1, 0.1))}, None),
    "fourth_jet_29_5": ({**MUON, "jets": four_jets(pts=(100, 80, 60, 29.5))}, None),  # passes with JES up
    "jet_fails_lepton_veto_id": ({**MUON, "jets": [*four_jets()[:3], {"pt": 40.0, "jetId": 2}]}, None),
    "jet_forward": ({**MUON, "jets": [*four_jets()[:3], {"pt": 40.0, "eta": 2.5}]}, None),
    "muon_sip3d": ({"muons": [{"sip3d": 4.5}], "jets": four_jets()}, None),
    "muon_iso": ({"muons": [{"pfRelIso04_all": 0.2}], "jets": four_jets()}, None),
    "muon_eta": ({"muons": [{"eta": 2.2}], "jets": four_jets()}, None),
    "muon_pt": ({"muons": [{"pt": 29.0}], "jets": four_jets()}, None),
    "muon_not_tight": ({"muons": [{"tightId": False}], "jets": four_jets()}, None),
    "electron_tight": ({"electrons": [{}], "jets": four_jets()}, "4j1b"),
    "electron_medium": ({"electrons": [{"cutBased": 3}], "jets": four_jets()}, None),
    "electron_sip3d": ({"electrons": [{"sip3d": 5.0}], "jets": four_jets()}, None),
    "two_leptons": ({"electrons": [{}], "muons": [{}], "jets": four_jets()}, None),
    "three_jets": ({**MUON, "jets": four_jets()[:3]}, None),
}


def _regions(chosen: definitions.Definitions, events: list[dict]) -> list[str | None]:
    electrons, muons, jets = collections(events)
    masks = chosen.regions(
        chosen.electrons(electrons), chosen.muons(muons), chosen.jets(ttbar._jets(jets, jets.pt, chosen.btag_field))
    )
    return [next((r for r, m in masks.items() if m[i]), None) for i in range(len(events))]


def test_agc_objects_and_regions_event_by_event() -> None:
    events = [event for event, _ in EVENTS.values()]
    assert dict(zip(EVENTS, _regions(definitions.AGC, events), strict=True)) == {
        name: region for name, (_, region) in EVENTS.items()
    }


def test_modern_tags_with_deepjet() -> None:
    jets = four_jets((0.9, 0.9, 0.1, 0.1))  # CSVv2 would say two b tags
    for jet, deepjet in zip(jets, (0.30, 0.27, 0.01, 0.01), strict=True):
        jet["btagDeepFlavB"] = deepjet  # DeepJet: one above the medium working point 0.2783
    assert _regions(definitions.MODERN, [{**MUON, "jets": jets}]) == ["4j1b"]
    assert _regions(definitions.AGC, [{**MUON, "jets": jets}]) == ["4j2b"]
    with pytest.raises(ValueError, match="unknown definition set 'cms'; known: agc, modern"):
        definitions.get("cms")


def _p4(jet: dict) -> np.ndarray:
    pt, eta, phi, mass = jet["pt"], jet["eta"], jet["phi"], jet.get("mass", 10.0)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.array([np.sqrt(px**2 + py**2 + pz**2 + mass**2), px, py, pz])


def test_observables_ht_and_trijet_mass() -> None:
    one_b, two_b = EVENTS["one_b"][0], EVENTS["two_b"][0]
    histogram = ttbar.new_histogram(["ttbar"])
    electrons, muons, jets = collections([one_b, two_b])
    cutflow = ttbar.fill_events(
        histogram, electrons, muons, jets, np.array([1.0, 1.0]), "ttbar", with_systematics=False
    )
    assert (cutflow["4j1b"], cutflow["4j2b"]) == (1, 1)
    ht = histogram[:, "4j1b", "ttbar", "nominal"]
    assert ht[ht.axes[0].index(280.0)].value == 1  # 100 + 80 + 60 + 40
    # Highest-pT trijet holding a tag (> 0.5): computed from four-vectors by hand.
    candidates = []
    for combo in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        jets_ = [two_b["jets"][i] for i in combo]
        if max(j["btagCSVV2"] for j in jets_) > 0.5:
            total = sum(_p4(j) for j in jets_)
            candidates.append((np.hypot(total[1], total[2]), np.sqrt(total[0] ** 2 - np.sum(total[1:] ** 2))))
    expected_mass = max(candidates)[1]
    electrons, muons, jets = collections([two_b])
    chosen = definitions.AGC
    selected = chosen.jets(ttbar._jets(jets, jets.pt, chosen.btag_field))
    assert chosen.trijet_mass(selected)[0] == pytest.approx(expected_mass, rel=1e-5)
    # The jet-energy scale varies pT only (mass, eta, phi kept), as in the AGC.
    scaled = chosen.jets(ttbar._jets(jets, systematics.jet_pt("pt_scale_up", jets.pt, None), chosen.btag_field))
    assert scaled.mass.tolist() == selected.mass.tolist()
    assert scaled.pt.tolist()[0] == pytest.approx((1.03 * selected.pt).tolist()[0])
    masses = histogram[:, "4j2b", "ttbar", "nominal"]
    assert masses[masses.axes[0].index(expected_mass)].value == 1


def test_systematics_jes_btag_and_wjets_scale() -> None:
    events = [EVENTS["one_b"][0], EVENTS["fourth_jet_29_5"][0]]
    histogram = ttbar.new_histogram(["wjets"])
    electrons, muons, jets = collections(events)
    ttbar.fill_events(histogram, electrons, muons, jets, np.array([2.0, 2.0]), "wjets")

    def total(variation: str) -> float:
        return histogram[:, "4j1b", "wjets", variation].sum(flow=True).value

    assert total("nominal") == 2.0
    assert total("pt_scale_up") == 4.0  # 29.5 x 1.03 = 30.4 GeV: the second event's fourth jet passes
    assert total("pt_scale_down") == 2.0
    assert total("pt_res_up") in (2.0, 4.0)
    # b-tag weights: 1 +- 0.075 x pT(i-th jet) / 50 GeV with pT 100, 80, 60, 40
    for i, pt in enumerate((100, 80, 60, 40)):
        assert total(f"btag_var_{i}_up") == pytest.approx(2.0 * (1 + 0.075 * pt / 50))
        assert total(f"btag_var_{i}_down") == pytest.approx(2.0 * (1 - 0.075 * pt / 50))
    assert total("scale_var_up") == pytest.approx(2.06)
    assert total("scale_var_down") == pytest.approx(1.94)
    # JES scales pT: HT 280 -> 288.4 and 269.5 -> 277.6 GeV, both in the bin [270, 290)
    up = histogram[:, "4j1b", "wjets", "pt_scale_up"]
    assert up[up.axes[0].index(280 * 1.03)].value == 4.0
    down = histogram[:, "4j1b", "wjets", "pt_scale_down"]
    assert down[down.axes[0].index(280 * 0.97)].value == 2.0  # 271.6 GeV


def test_variation_samples_fill_under_their_own_name_only() -> None:
    histogram = ttbar.new_histogram(["ttbar"])
    electrons, muons, jets = collections([EVENTS["one_b"][0]])
    ttbar.fill_events(histogram, electrons, muons, jets, np.array([1.5]), "ttbar", variation="ME_var")
    filled = {v for v in histogram.axes["variation"] if histogram[:, :, "ttbar", v].sum().value}
    assert filled == {"ME_var"}
    assert systematics.variations_for("ttbar", {"ME_var", "PS_var"}, True)[-2:] == ["ME_var", "PS_var"]
    assert "scale_var_up" in systematics.variations_for("wjets", set(), True)
    assert systematics.variations_for("ttbar", set(), False) == ["nominal"]


def test_generator_writes_every_branch_the_definitions_read() -> None:
    from af import nanoaod

    chunk = nanoaod.generate("ttbar_PS_var", 500, np.random.default_rng(1))
    for chosen in (definitions.AGC, definitions.MODERN):
        assert set(chosen.jet_fields) <= set(chunk["Jet"].fields)
    assert {"sip3d", "tightId", "pfRelIso04_all"} <= set(chunk["Muon"].fields)
    assert {"sip3d", "cutBased"} <= set(chunk["Electron"].fields)
    assert "genWeight" in chunk
    assert nanoaod.process_and_variation("ttbar_ME_var") == ("ttbar", "ME_var")
    assert (nanoaod.generate("ttbar_ME_var", 2000, np.random.default_rng(2))["genWeight"] < 0).any()
