"""The dask-gateway server process: its configuration file and the dashboard guard of schedulers and workers."""
