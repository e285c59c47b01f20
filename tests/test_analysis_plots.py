"""Plots: the uncertainty band from the variations (worked out by hand) and the labels a physicist
expects (weighted events, luminosity, energy)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from analyses import plots, ttbar  # noqa: E402

pytestmark = pytest.mark.no_facility


def _histogram() -> tuple:
    histogram = ttbar.new_histogram(["ttbar", "wjets"])
    x = 275.0  # one bin

    def fill(process: str, variation: str, weight: float, times: int = 1) -> None:
        histogram.fill(observable=[x] * times, region="4j1b", process=process, variation=variation, weight=weight)

    fill("ttbar", "nominal", 5.0, 2)  # 10, variance 50
    fill("ttbar", "pt_scale_up", 13.0)
    fill("ttbar", "pt_scale_down", 8.0)
    fill("ttbar", "ME_var", 9.0)  # one-sided: shift -1, symmetrised
    fill("wjets", "nominal", 4.0)  # 4, variance 16
    fill("wjets", "pt_scale_up", 6.0)
    fill("wjets", "pt_scale_down", 4.0)
    variations = {
        "ttbar": ["nominal", "pt_scale_up", "pt_scale_down", "ME_var"],
        "wjets": ["nominal", "pt_scale_up", "pt_scale_down"],
    }
    return histogram, variations, histogram.axes["observable"].index(x)


def test_band_adds_systematic_shifts_and_mc_statistics_in_quadrature() -> None:
    histogram, variations, index = _histogram()
    band = plots.uncertainty_band(histogram, "4j1b", variations)
    # JES: up (13 - 10) + (6 - 4) = 5, down (8 - 10) + 0 = -2 -> 5; ME: |9 - 10| = 1; MC stat 50 + 16.
    assert band[index] == pytest.approx(np.sqrt(50 + 16 + 5**2 + 1**2))
    assert band.sum() == pytest.approx(band[index])  # other bins empty


def test_stack_plot_labels() -> None:
    histogram, variations, _ = _histogram()
    fig, ax = plt.subplots()
    plots.stack(histogram, "4j1b", variations, ax=ax)
    texts = " ".join(t.get_text() for t in ax.texts) + " " + " ".join(t.get_text() for t in fig.texts)
    assert ax.get_ylabel() == "weighted events"
    assert "3.38" in texts and "13 TeV" in texts and "AGC" in texts
    labels = ax.get_legend_handles_labels()[1]
    assert {"ttbar", "wjets", "syst. + MC stat."} <= set(labels)
    plt.close(fig)
