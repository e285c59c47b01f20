"""Analyses that run on the facility (importable by notebooks, Dask workers, benchmarks and tests).

The AGC v2 ttbar analysis:
  ttbar          coffea processor, run(), histograms.root writer
  definitions    object and region definitions: `agc` (the AGC's) and `modern` (DeepJet)
  systematics    JES, JER, b-tag weights, W+jets scale, variation samples
  normalisation  xsec x luminosity / sum of generator weights
  stats          cabinetry + pyhf model and fit of the ttbar signal strength
  plots          stacked regions with uncertainty bands, variations
"""
