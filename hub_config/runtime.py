"""The running facility's settings (ports, secrets, folders), written by `af up` to runtime.json.

JupyterHub's and dask-gateway's configuration files read it, so they never hold a port or a
secret of their own and every component agrees on them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_RUNTIME = "AF_RUNTIME"


def load_runtime(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    path = path or os.environ.get(ENV_RUNTIME)
    if not path:
        raise RuntimeError(f"${ENV_RUNTIME} is not set; start the facility with `af up`")
    return json.loads(Path(path).read_text())


def gateway_service_name(backend: str) -> str:
    return f"dask-gateway-{backend}"
