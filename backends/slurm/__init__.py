"""The Slurm kind: notebooks (batchspawner), Dask clusters (dask-gateway) and `af run` as Slurm jobs."""
