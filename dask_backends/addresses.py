"""Where the user's dask-gateways and dashboards are, from the notebook's environment.

Plain environment parsing, no Dask: the JupyterLab panel's server extension needs these at every
notebook server start, and importing dask-gateway (and with it distributed) there would slow every
start down (issue 15, spawn storms). dask_backends.client builds on them.
"""

from __future__ import annotations

import json
import os

ENV_GATEWAYS = "AF_DASK_GATEWAYS"
# Where the hub serves each backend's dashboards to their owners (hub_config/dashboard_service.py).
ENV_DASHBOARDS = "AF_DASK_DASHBOARDS_URL"


def available_backends() -> dict[str, str]:
    """Backend name -> dask-gateway address, for the backends this user may use."""
    raw = os.environ.get(ENV_GATEWAYS)
    if not raw:
        raise RuntimeError(
            f"${ENV_GATEWAYS} is not set: run this in a notebook started by the facility's JupyterHub, "
            "or set it to a JSON object of backend name -> gateway address"
        )
    return json.loads(raw)


def gateway_address(backend: str | None = None) -> tuple[str, str]:
    """(backend name, gateway address) for a backend the user may use (default: the notebook's own)."""
    gateways = available_backends()
    name = backend or os.environ.get("AF_BACKEND") or next(iter(gateways), "")
    if name not in gateways:
        known = ", ".join(gateways) or "none"
        raise ValueError(f"no dask-gateway for backend {name!r}; backends you may use: {known}")
    return name, gateways[name]


def dashboard_address(backend: str) -> str | None:
    """The public address under which a backend's dashboards open (`<it>/clusters/<name>/status`).

    None outside the facility's notebooks: dask-gateway then links its own proxy route, which
    refuses everyone (the dashboards need the key only the hub's dashboard service adds).
    """
    base = os.environ.get(ENV_DASHBOARDS)
    return f"{base.rstrip('/')}/{backend}" if base else None
