"""Plots of the ttbar analysis as physicists read them: stacked processes in weighted events, the
luminosity and centre-of-mass energy (mplhep), pseudo-data as points, and a band of the systematic
and MC-statistical uncertainty built from the variations the run filled."""

from __future__ import annotations

from typing import Any

import hist
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from analyses.normalisation import LUMI_PB

OBSERVABLES = {"4j1b": "$H_T$ [GeV]", "4j2b": "$m_{bjj}$ [GeV]"}
# Variations that come alone (the AGC symmetrises them); the others are up/down pairs.
ONE_SIDED = ("pt_res_up", "ME_var", "PS_var")
PAIRS = {"pt_scale_up": "pt_scale_down", "scaleup": "scaledown", "scale_var_up": "scale_var_down"}
PAIRS |= {f"btag_var_{i}_up": f"btag_var_{i}_down" for i in range(4)}


def _label(ax: Any, lumi_pb: float) -> None:
    # "Simulation" (data=False), integrated luminosity in fb^-1 and sqrt(s) = 13 TeV, mplhep's layout.
    mplhep.label.exp_label(exp="AGC", data=False, lumi=f"{lumi_pb / 1000:.2f}", com=13, fontsize=16, ax=ax)


def uncertainty_band(histogram: hist.Hist, region: str, variations: dict[str, list[str]]) -> np.ndarray:
    """Per-bin total uncertainty of the summed prediction: each systematic's shift (the larger of up
    and down; one-sided ones symmetrised), summed over processes, added in quadrature with MC stats."""
    nominal = {p: histogram[:, region, p, "nominal"] for p in variations}
    squared = sum(h.variances() for h in nominal.values())
    names = {v for vs in variations.values() for v in vs}
    for up in [*ONE_SIDED, *PAIRS]:
        if up not in names:
            continue
        shift_up = np.zeros_like(squared)
        shift_down = np.zeros_like(squared)
        for process, available in variations.items():
            if up not in available:
                continue
            shift_up += histogram[:, region, process, up].values() - nominal[process].values()
            down = PAIRS.get(up)
            if down in available:
                shift_down += histogram[:, region, process, down].values() - nominal[process].values()
        squared = squared + np.maximum(np.abs(shift_up), np.abs(shift_down)) ** 2
    return np.sqrt(squared)


def stack(
    histogram: hist.Hist,
    region: str,
    variations: dict[str, list[str]],
    pseudodata: hist.Hist | None = None,
    ax: Any = None,
    lumi_pb: float = LUMI_PB,
) -> Any:
    """Stacked nominal processes of a region with the uncertainty band, and pseudo-data if given."""
    ax = ax or plt.gca()
    processes = list(variations)
    parts = [histogram[:, region, p, "nominal"] for p in processes]
    mplhep.histplot(parts, label=processes, stack=True, histtype="fill", ax=ax)
    total = sum(h.values() for h in parts)
    band = uncertainty_band(histogram, region, variations)
    edges = histogram.axes["observable"].edges
    ax.stairs(
        total + band,
        edges,
        baseline=total - band,
        fill=True,
        facecolor="none",
        edgecolor="dimgrey",
        hatch="///",
        linewidth=0,
        label="syst. + MC stat.",
    )
    if pseudodata is not None:
        mplhep.histplot(pseudodata[:, region], histtype="errorbar", color="black", label="pseudo-data", ax=ax)
    ax.set_xlabel(OBSERVABLES.get(region, "observable [GeV]"))
    ax.set_ylabel("weighted events")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend
    ax.legend(title=f"region {region}")
    _label(ax, lumi_pb)
    return ax


def variations_plot(histogram: hist.Hist, region: str, process: str, names: list[str], ax: Any = None) -> Any:
    """One process's nominal and varied shapes in a region."""
    ax = ax or plt.gca()
    for name in names:
        mplhep.histplot(histogram[:, region, process, name], label=name, yerr=False, ax=ax)
    ax.set_xlabel(OBSERVABLES.get(region, "observable [GeV]"))
    ax.set_ylabel("weighted events")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.6)  # room for the legend above the curves
    ax.legend(title=f"{process}, {region}", ncols=2, fontsize="small")
    _label(ax, LUMI_PB)
    return ax
