"""Normalisation by the sum of generator weights (not the event count), and samples without a selected
event kept on the process axis and in histograms.root. Expected values are computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot

from analyses import normalisation, ttbar
from tests.analysis_events import four_jets, write_file

pytestmark = pytest.mark.no_facility

LUMI = normalisation.LUMI_PB
SELECTED = {"muons": [{}], "jets": four_jets()}  # one tight muon, four jets, one b tag: 4j1b, HT 280
NOT_SELECTED = {"jets": four_jets()}  # no lepton


def test_event_weights_use_the_sum_of_weights_or_of_signs() -> None:
    gen = np.array([2.0, -1.0, 3.0, 1.0])
    meta = {"sample": "s", "xsec_pb": 10.0, "genWeight_sum": 5.0, "genWeight_sign_sum": 2.0}
    # 10 pb x 100 / pb / 5 = 200 per unit of weight; signs: 10 x 100 / 2 = 500 per event.
    assert normalisation.event_weights(gen, meta, 100.0, "weights") == pytest.approx([400, -200, 600, 200])
    assert normalisation.event_weights(gen, meta, 100.0, "signs") == pytest.approx([500, -500, 500, 500])
    assert normalisation.event_weights(gen, {"sample": "data"}, 100.0) == pytest.approx([1, 1, 1, 1])


def test_event_weights_refuse_missing_or_non_positive_sums() -> None:
    gen = np.ones(3)
    with pytest.raises(ValueError, match="sample 's' has no genWeight_sum"):
        normalisation.event_weights(gen, {"sample": "s", "xsec_pb": 1.0})
    with pytest.raises(ValueError, match="genWeight_sign_sum is -2.0, so it cannot be normalised"):
        normalisation.event_weights(gen, {"sample": "s", "xsec_pb": 1.0, "genWeight_sign_sum": -2.0}, mode="signs")
    with pytest.raises(ValueError, match="unknown normalisation mode 'count'"):
        normalisation.event_weights(gen, {"sample": "s", "xsec_pb": 1.0}, mode="count")


def _fileset(tmp_path: Path) -> dict:
    ttbar_events = [
        {**SELECTED, "genWeight": 2.0},
        {**SELECTED, "genWeight": -1.0},
        {**SELECTED, "genWeight": 2.0},
        {**NOT_SELECTED, "genWeight": 3.0},
        {**NOT_SELECTED, "genWeight": -1.0},
    ]
    qcd_events = [{**NOT_SELECTED, "genWeight": 1.0}] * 3
    return {
        "ttbar": {
            "files": {str(write_file(tmp_path / "ttbar.root", ttbar_events)): "Events"},
            "metadata": {"sample": "ttbar", "xsec_pb": 100.0},  # no sums: computed from the file
        },
        "qcd": {
            "files": {str(write_file(tmp_path / "qcd.root", qcd_events)): "Events"},
            "metadata": {"sample": "qcd", "xsec_pb": 50.0, "genWeight_sum": 3.0, "genWeight_sign_sum": 3.0},
        },
    }


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # sum of weights 2 - 1 + 2 + 3 - 1 = 5; selected 2 - 1 + 2 = 3
        ("weights", 100.0 * LUMI * 3 / 5),
        # sum of signs 1 - 1 + 1 + 1 - 1 = 1; selected signs 1 - 1 + 1 = 1
        ("signs", 100.0 * LUMI * 1 / 1),
    ],
)
def test_processor_normalises_by_sum_of_generator_weights(tmp_path: Path, mode: str, expected: float) -> None:
    output = ttbar.run(_fileset(tmp_path), with_systematics=False, normalisation_mode=mode)
    histogram = output["hist"]
    assert histogram[:, "4j1b", "ttbar", "nominal"].sum().value == pytest.approx(expected)
    assert output["cutflow"]["ttbar"]["4j1b"] == 3
    # the event count (5) would have given 100 * L * 3 / 5 in `weights` mode only by chance of this
    # sample; in `signs` mode it would give 100 * L * 1 / 5: a factor 5 off.
    assert expected != pytest.approx(100.0 * LUMI * 1 / 5)


def test_catalogue_sums_are_used_when_present(tmp_path: Path) -> None:
    fileset = _fileset(tmp_path)
    # As if this file were half of a larger sample: the catalogue's sum (10) normalises, not the file's (5).
    fileset["ttbar"]["metadata"].update(genWeight_sum=10.0, genWeight_sign_sum=2.0)
    histogram = ttbar.run(fileset, with_systematics=False)["hist"]
    assert histogram[:, "4j1b", "ttbar", "nominal"].sum().value == pytest.approx(100.0 * LUMI * 3 / 10)


def test_sample_without_selected_event_stays_on_axis_and_in_root_file(tmp_path: Path) -> None:
    output = ttbar.run(_fileset(tmp_path))
    histogram = output["hist"]
    assert list(histogram.axes["process"]) == ["ttbar", "qcd"]
    assert histogram[:, :, "qcd", :].sum().value == 0
    assert output["cutflow"]["qcd"] == {
        "all": 3,
        "sum_weights": pytest.approx(50.0 * LUMI),
        "4j1b": 0,
        "4j1b_weighted": 0.0,
        "4j2b": 0,
        "4j2b_weighted": 0.0,
    }
    path = tmp_path / "histograms.root"
    written = ttbar.write_histograms(histogram, output["variations"], str(path))
    with uproot.open(path) as opened:
        keys = set(opened.keys(cycle=False))
        assert {"4j1b_qcd_nominal", "4j2b_qcd_nominal", "4j1b_qcd_btag_var_3_down"} <= keys
        assert opened["4j1b_qcd_nominal"].values().sum() == 0
        assert opened["4j1b_ttbar_nominal"].values().sum() == pytest.approx(100.0 * LUMI * 3 / 5)
    assert set(written) == keys
    assert "4j1b_qcd_scale_var_up" not in keys  # W+jets only


def test_generated_catalogue_records_weight_sums(tmp_path: Path) -> None:
    from af import data

    entries = data.write_sample(tmp_path, "wjets", events=3000, files=2, seed=7)
    for entry in entries:
        with uproot.open(tmp_path / entry["path"].lstrip("/")) as opened:
            weights = opened["Events"]["genWeight"].array(library="np").astype(np.float64)
        assert entry["genWeight_sum"] == pytest.approx(weights.sum())
        assert entry["genWeight_sign_sum"] == pytest.approx(np.sign(weights).sum())
        assert (weights < 0).any()  # W+jets has negative weights: sums differ from the event count
        assert entry["genWeight_sign_sum"] < entry["events"]
    assert data.weight_sums(entries)["genWeight_sum"] == pytest.approx(sum(e["genWeight_sum"] for e in entries))


def test_same_seed_gives_the_same_file_uuids_so_the_same_smearing(tmp_path: Path) -> None:
    """The analysis seeds each chunk's jet smearing from the file's UUID: two generations from one
    seed must carry the same UUIDs (uproot's default is a new random one per file), and the files
    of one generation different ones."""
    from af import data

    def uuids(folder: Path, seed: int) -> list[str]:
        entries = data.write_sample(folder, "ttbar", events=500, files=2, seed=seed)
        found = []
        for entry in entries:
            with uproot.open(folder / entry["path"].lstrip("/")) as opened:
                found.append(str(opened.file.uuid))
        return found

    first, again, other = uuids(tmp_path / "a", 7), uuids(tmp_path / "b", 7), uuids(tmp_path / "c", 8)
    assert first == again
    assert len(set(first)) == 2
    assert not set(first) & set(other)


def test_same_file_under_another_path_gives_identical_histograms(tmp_path: Path) -> None:
    """The jet-resolution smearing is seeded by the ROOT file's UUID, so reading a file through the
    cache or from the local disk fills the same pt_res_up histograms."""
    import shutil

    fileset = _fileset(tmp_path)
    original = next(iter(fileset["ttbar"]["files"]))
    copy = tmp_path / "elsewhere" / "copy.root"
    copy.parent.mkdir()
    shutil.copy(original, copy)
    moved = {**fileset, "ttbar": {**fileset["ttbar"], "files": {str(copy): "Events"}}}
    first, second = ttbar.run(fileset)["hist"], ttbar.run(moved)["hist"]
    assert first[:, :, "ttbar", "pt_res_up"].sum().value > 0
    assert np.array_equal(first.values(flow=True), second.values(flow=True))
