"""The cluster-config traits the kinds' dask-gateway backends read instead of environment variables."""

from __future__ import annotations

from traitlets import Integer, Unicode
from traitlets.config import Configurable


class ImageAndGpusMixin(Configurable):
    """Mixed into a kind's ClusterConfig: the image and the worker GPUs of one cluster (cluster options)."""

    image = Unicode("", help="Registry reference of the cluster's image; empty: facility.yaml's default.", config=True)
    worker_gpus = Integer(0, help="GPUs per worker.", config=True)
