"""The HTCondor kind: notebooks (batchspawner), Dask clusters (dask-gateway) and `af run` as HTCondor jobs."""
