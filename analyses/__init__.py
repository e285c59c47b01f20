"""Analyses that run on the facility (importable by notebooks, Dask workers, benchmarks and tests)."""
