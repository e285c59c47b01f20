"""The statistical stage (cabinetry + pyhf): on generated samples with pseudo-data made with an
injected ttbar signal strength, the fit recovers it within its uncertainty."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyses import stats, ttbar

pytestmark = pytest.mark.no_facility

INJECTED_MU = 1.3


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from af import data

    root = tmp_path_factory.mktemp("lake")
    samples = ("ttbar", "wjets", "ttbar_scaleup", "ttbar_scaledown", "ttbar_ME_var", "ttbar_PS_var")
    data.generate_samples(root, samples, events=20_000, files=1, seed=2026)
    catalogue = data.read_catalogue(root)["samples"]
    fileset = {
        name: {
            "files": {str(root / f["path"].lstrip("/")): "Events" for f in entry["files"]},
            "metadata": {"sample": name, **{k: v for k, v in entry.items() if k != "files"}},
        }
        for name, entry in catalogue.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea: missing cross-references in generated files
        return ttbar.run(fileset)


def _fit(analysed: dict[str, Any], folder: Path, rng: np.random.Generator | None) -> stats.FitResult:
    data = stats.pseudodata(analysed["hist"], analysed["variations"], mu=INJECTED_MU, rng=rng)
    path = folder / "histograms.root"
    ttbar.write_histograms(analysed["hist"], analysed["variations"], str(path), data)
    return stats.fit(path, analysed["variations"], folder)


def test_model_has_the_agc_parameters(analysed: dict[str, Any], tmp_path: Path) -> None:
    config = stats.config(analysed["variations"], tmp_path / "h.root", tmp_path)
    names = {s["Name"] for s in config["Systematics"]}
    assert {"ME variation", "PS variation", "ttbar scale variations", "Jet energy scale"} <= names
    assert {"Jet energy resolution", "W+jets scale variations", "Luminosity"} <= names
    assert {f"b-tag NP {i}" for i in range(1, 5)} <= names
    assert [r["Name"] for r in config["Regions"]] == ["4j1b CR", "4j2b SR"]


def test_fit_recovers_injected_signal_strength_asimov(analysed: dict[str, Any], tmp_path: Path) -> None:
    result = _fit(analysed, tmp_path, rng=None)
    print(result.summary())
    assert 0 < result.uncertainty < 0.5
    assert abs(result.mu - INJECTED_MU) < min(0.01, result.uncertainty)
    assert (tmp_path / "workspace.json").is_file()
    figure = stats.prefit_postfit_figure(result)
    titles = [ax.get_legend().get_title().get_text() for ax in figure.axes]
    assert titles == ["4j1b CR, pre-fit", "4j2b SR, pre-fit", "4j1b CR, post-fit", "4j2b SR, post-fit"]
    assert {ax.get_ylabel() for ax in figure.axes} == {"weighted events"}
    figure.savefig(tmp_path / "fit.png")


def test_fit_recovers_injected_signal_strength_poisson_data(analysed: dict[str, Any], tmp_path: Path) -> None:
    result = _fit(analysed, tmp_path, rng=np.random.default_rng(16))
    print(result.summary())
    # Fluctuated data: the fitted value scatters around the injected one by about its uncertainty.
    assert abs(result.mu - INJECTED_MU) < 2 * result.uncertainty


def test_fit_needs_the_signal_process(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the fit needs the ttbar process; processes: wjets"):
        stats.config({"wjets": ["nominal"]}, tmp_path / "h.root", tmp_path)
