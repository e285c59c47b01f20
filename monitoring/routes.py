"""Paths the facility adds to every dask-gateway's API (monitoring.gateway), for its readers."""

METRICS_PATH = "/api/metrics"  # Prometheus text format: clusters and workers by status
HOLDINGS_PATH = "/api/af/holdings"  # JSON: per user, the clusters, workers, cores and memory held
