"""The local kind: notebooks and Dask processes on the facility's own host."""
