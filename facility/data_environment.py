"""$AF_DATA_*: where a backend's notebooks, Dask workers and `af run` kernels read the data lake.

The hub sets them for notebooks, the gateways for workers and `af run` for its kernels;
dask_backends.data.DataLake reads them. The running facility's URLs (runtime.json, whose origin
and caches move with `af up --port`) win over facility.yaml's.
"""

from __future__ import annotations

import os

from facility.model import Backend, Facility
from facility.runtime import ENV_RUNTIME, Runtime, RuntimeFileError, read_runtime

ENV_ORIGIN = "AF_DATA_ORIGIN"
ENV_CACHE = "AF_DATA_CACHE"
ENV_PREFIXES = "AF_DATA_PREFIXES"


def data_environment(fac: Facility, backend: Backend, runtime: Runtime | None = None) -> dict[str, str]:
    """$AF_DATA_* for a backend's notebooks and workers: the running facility's URLs when it runs them.

    runtime None: the running facility's runtime.json named by $AF_RUNTIME (the hub and gateways have it).
    """
    if runtime is None and os.environ.get(ENV_RUNTIME):
        try:
            runtime = read_runtime()
        except RuntimeFileError:
            runtime = None
    data = runtime.data if runtime is not None else {}
    if data:
        env = {ENV_ORIGIN: data["origin"]["url"]}
        cache_name = backend.data_cache
        if cache_name and cache_name in data.get("caches", {}):
            env[ENV_CACHE] = data["caches"][cache_name]["url"]
        prefixes = data.get("prefixes") or []
    elif fac.data is not None:
        env = {ENV_ORIGIN: fac.data.origin_url}
        cache = fac.data.cache(backend.data_cache)
        if cache is not None:
            env[ENV_CACHE] = cache.url
        prefixes = list(fac.data.prefixes)
    else:
        return {}
    if prefixes:
        env[ENV_PREFIXES] = ":".join(prefixes)
    return env
