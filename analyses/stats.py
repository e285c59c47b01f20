"""The AGC's statistical stage with cabinetry and pyhf: histogram model, fit, ttbar signal strength.

As in the AGC v2: regions `4j1b CR` (HT) and `4j2b SR` (trijet mass) read from histograms.root
(`{region}_{process}_{variation}`), each rebinned for the fit from 110 GeV upwards with two bins
merged into one (11 bins of 40 GeV); the free parameter `ttbar_norm` scales ttbar; nuisance
parameters for the ME, PS and scale variation samples (where the fileset had them), the jet-energy
scale and resolution, four b-tag parameters, the W+jets scale and a 3 % luminosity uncertainty.

    output = ttbar.run(fileset)
    data = pseudodata(output["hist"], output["variations"], mu=1.0)
    ttbar.write_histograms(output["hist"], output["variations"], "histograms.root", data)
    result = fit("histograms.root", output["variations"])
    print(result.summary())
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hist
import numpy as np

from analyses.definitions import REGIONS
from analyses.normalisation import LUMI_PB
from analyses.ttbar import BINS

SIGNAL = "ttbar"
POI = "ttbar_norm"
REBIN = slice(110j, None, hist.rebin(2))  # the AGC's fit binning: from 110 GeV, two bins into one
REGION_NAMES = {"4j1b": ("4j1b CR", "$H_T$ [GeV]"), "4j2b": ("4j2b SR", "$m_{bjj}$ [GeV]")}
LUMINOSITY_UNCERTAINTY = 0.03


def pseudodata(
    histogram: hist.Hist,
    variations: dict[str, list[str]],
    mu: float = 1.0,
    rng: np.random.Generator | None = None,
) -> hist.Hist:
    """Data-like counts per region: mu x ttbar + the other processes (nominal); Poisson-fluctuated
    with `rng`, else the expected counts (Asimov)."""
    expected = None
    for process in variations:
        part = histogram[:, :, process, "nominal"] * (mu if process == SIGNAL else 1.0)
        expected = part if expected is None else expected + part
    if expected is None:
        raise ValueError("no process to build pseudo-data from")
    counts = np.clip(expected.values(flow=True), 0, None)
    result = hist.Hist(*expected.axes, storage=hist.storage.Weight())
    values = rng.poisson(counts).astype(float) if rng is not None else counts
    result.view(flow=True).value = values
    result.view(flow=True).variance = values
    return result


def config(variations: dict[str, list[str]], histogram_file: str | Path, folder: str | Path) -> dict[str, Any]:
    """cabinetry configuration of the AGC's model for the processes and variations the run had."""
    if SIGNAL not in variations:
        raise ValueError(f"the fit needs the {SIGNAL} process; processes: {', '.join(variations) or 'none'}")
    ttbar_vars = set(variations[SIGNAL])

    def two_sided(name: str, up: str, down: str | None, samples: list[str] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Name": name,
            "Type": "NormPlusShape",
            "Up": {"VariationPath": f"_{up}"},
            "Down": {"VariationPath": f"_{down}"} if down else {"Symmetrize": True},
        }
        if samples is not None:
            entry["Samples"] = samples
        return entry

    processes = list(variations)
    systematics = []
    if {"ME_var"} <= ttbar_vars:
        systematics.append(two_sided("ME variation", "ME_var", None, [SIGNAL]))
    if {"PS_var"} <= ttbar_vars:
        systematics.append(two_sided("PS variation", "PS_var", None, [SIGNAL]))
    if {"scaleup", "scaledown"} <= ttbar_vars:
        systematics.append(two_sided("ttbar scale variations", "scaleup", "scaledown", [SIGNAL]))
    if "pt_scale_up" in ttbar_vars:
        systematics.append(two_sided("Jet energy scale", "pt_scale_up", "pt_scale_down"))
        systematics.append(two_sided("Jet energy resolution", "pt_res_up", None))
        for i in range(4):
            systematics.append(two_sided(f"b-tag NP {i + 1}", f"btag_var_{i}_up", f"btag_var_{i}_down"))
    scaled = [p for p in processes if "scale_var_up" in variations[p]]
    if scaled:
        systematics.append(two_sided("W+jets scale variations", "scale_var_up", "scale_var_down", scaled))
    systematics.append(
        {
            "Name": "Luminosity",
            "Type": "Normalization",
            "Up": {"Normalization": LUMINOSITY_UNCERTAINTY},
            "Down": {"Normalization": -LUMINOSITY_UNCERTAINTY},
        }
    )
    return {
        "General": {
            "Measurement": "CMS_ttbar",
            "POI": POI,
            "HistogramFolder": str(folder),
            "InputPath": f"{histogram_file}:{{RegionPath}}_{{SamplePath}}{{VariationPath}}",
            "VariationPath": "_nominal",
        },
        "Regions": [{"Name": REGION_NAMES[r][0], "RegionPath": r, "Variable": REGION_NAMES[r][1]} for r in REGIONS],
        "Samples": [{"Name": "Pseudodata", "SamplePath": "pseudodata", "Data": True}]
        + [{"Name": p, "SamplePath": p} for p in processes],
        "Systematics": systematics,
        "NormFactors": [{"Name": POI, "Samples": SIGNAL, "Nominal": 1.0, "Bounds": [0, 10]}],
    }


def _rebinning_router(cabinetry_config: dict[str, Any]) -> Any:
    """Read each template from histograms.root and apply the AGC's fit binning (cabinetry's own
    collector cannot rebin)."""
    import cabinetry
    import uproot
    from cabinetry.templates import collector

    router = cabinetry.route.Router()
    general = cabinetry_config["General"]

    @router.register_template_builder()
    def build(region: dict, sample: dict, systematic: dict, template: str | None) -> hist.Hist:
        path = collector._histo_path(
            general["InputPath"], general["VariationPath"], region, sample, systematic, template
        )
        file_path, name = path.rsplit(":", 1)
        with uproot.open(file_path) as opened:
            return hist.Hist(opened[name].to_boost())[REBIN]

    return router


@dataclass
class FitResult:
    mu: float
    uncertainty: float
    labels: list[str]
    bestfit: np.ndarray
    uncertainties: np.ndarray
    model: Any
    data: list[float]
    fit_results: Any
    config: dict[str, Any]

    def summary(self) -> str:
        return f"ttbar signal strength mu = {self.mu:.3f} +- {self.uncertainty:.3f}"


def fit(histogram_file: str | Path, variations: dict[str, list[str]], workdir: str | Path = ".") -> FitResult:
    """Build the templates and the pyhf workspace with cabinetry and fit it (maximum likelihood, MINUIT)."""
    import cabinetry

    for name in ("cabinetry", "pyhf"):  # their INFO lines would flood a notebook and run.log
        logging.getLogger(name).setLevel(logging.WARNING)
    # Empty template bins are expected in the sparse W+jets tails; one warning per template is noise.
    logging.getLogger("cabinetry.histo").setLevel(logging.ERROR)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cabinetry_config = config(variations, Path(histogram_file).resolve(), workdir / "templates")
    cabinetry.configuration.validate(cabinetry_config)
    cabinetry.templates.build(cabinetry_config, router=_rebinning_router(cabinetry_config))
    cabinetry.templates.postprocess(cabinetry_config)
    workspace = cabinetry.workspace.build(cabinetry_config)
    cabinetry.workspace.save(workspace, workdir / "workspace.json")
    model, data = cabinetry.model_utils.model_and_data(workspace)
    # MINUIT strategy 2 (full Hessian at every step): with ~40 nuisance parameters and the MC
    # statistical gammas, strategy 1's approximate Hessian was seen to fail or give unstable errors.
    results = cabinetry.fit.fit(model, data, strategy=2)
    index = results.labels.index(POI)
    return FitResult(
        mu=float(results.bestfit[index]),
        uncertainty=float(results.uncertainty[index]),
        labels=list(results.labels),
        bestfit=np.asarray(results.bestfit),
        uncertainties=np.asarray(results.uncertainty),
        model=model,
        data=list(data),
        fit_results=results,
        config=cabinetry_config,
    )


def prefit_postfit_figure(result: FitResult, lumi_pb: float = LUMI_PB) -> Any:
    """One figure: each region (columns) before and after the fit (rows), stacked samples in weighted
    events with the model's total uncertainty band (cabinetry's predictions) and the pseudo-data."""
    import cabinetry
    import matplotlib.pyplot as plt
    import mplhep

    model = result.model
    observed = np.asarray(result.data[: model.config.nmaindata])
    edges = np.arange(110.0, BINS[2] + 1, 2 * (BINS[2] - BINS[1]) / BINS[0])  # the REBIN binning
    fig, axes = plt.subplots(2, len(model.config.channels), figsize=(16, 13), layout="constrained", squeeze=False)
    for row, fit_results in enumerate((None, result.fit_results)):
        prediction = cabinetry.model_utils.prediction(model, fit_results=fit_results)
        for column, channel in enumerate(model.config.channels):
            ax = axes[row][column]
            index = model.config.channels.index(channel)
            yields = np.asarray(prediction.model_yields[index])
            mplhep.histplot(list(yields), bins=edges, stack=True, histtype="fill", label=model.config.samples, ax=ax)
            total = yields.sum(axis=0)
            band = np.asarray(prediction.total_stdev_model_bins[index][-1])
            ax.stairs(total + band, edges, baseline=total - band, fill=True, facecolor="none", edgecolor="dimgrey")
            ax.patches[-1].set(hatch="///", linewidth=0, label="uncertainty")
            data = observed[model.config.channel_slices[channel]]
            ax.errorbar((edges[:-1] + edges[1:]) / 2, data, yerr=np.sqrt(data), fmt="ko", label="pseudo-data")
            region = channel.replace("-", " ").split()[0]
            ax.set_xlabel(REGION_NAMES.get(region, (channel, "observable [GeV]"))[1])
            ax.set_ylabel("weighted events")
            ax.set_xlim(edges[0], edges[-1])
            ax.legend(title=f"{channel.replace('-', ' ')}, {prediction.label}")
            mplhep.label.exp_label(exp="AGC", data=False, lumi=f"{lumi_pb / 1000:.2f}", com=13, fontsize=16, ax=ax)
    return fig
