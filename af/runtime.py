"""Plan the running facility: its folders, ports and secrets, saved as runtime.json (mode 600).

Secrets are kept across `af up` runs so logins and the gateway database survive a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from af.xrootd import plan_data
from dask_backends.backends import HOST_KINDS
from facility.model import Facility
from facility.secrets import GENERATORS, complete_secrets
from monitoring.plan import plan_metrics

ENV_STATE_DIR = "AF_STATE_DIR"


def default_state_dir() -> Path:
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "analysis-facility"


@dataclass(frozen=True)
class StateDir:
    """Where one facility instance keeps its runtime files, logs and databases."""

    root: Path

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def supervisor_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    def read_runtime(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.runtime_file.read_text())
        except FileNotFoundError:
            return None


def _public_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def plan_runtime(
    fac: Facility, facility_file: Path, state: StateDir, port: int | None = None, previous: dict | None = None
) -> dict[str, Any]:
    """Ports follow the public port: hub API +1, proxy API +2, gateways +10 upwards (two each)."""
    public = port or _public_port(fac.hub.bind_url)
    old = (previous or {}).get("secrets", {})
    gateways: dict[str, Any] = {}
    host_backends = [b for b in fac.backends if b.kind in HOST_KINDS]
    for index, backend in enumerate(host_backends):
        gw_port = public + 10 + 2 * index
        old_gw = (previous or {}).get("gateways", {}).get(backend.name, {})
        gateways[backend.name] = {
            "kind": backend.kind,
            "port": gw_port,
            "api_port": gw_port + 1,
            "url": f"http://127.0.0.1:{gw_port}",
            "api_token": old_gw.get("api_token") or GENERATORS["hex"](),
        }
    # The hub's Dask dashboard service (hub_config/dashboard_service.py) listens above the gateways.
    dashboards_port = public + 10 + 2 * len(host_backends)
    return {
        "state_dir": str(state.root),
        "facility_file": str(facility_file),
        "public_url": f"http://127.0.0.1:{public}",
        "ports": {"public": public, "hub_api": public + 1, "proxy_api": public + 2, "dashboards": dashboards_port},
        "gateways": gateways,
        # Effective data-lake URLs; the origin and caches on loopback move with --port (af.xrootd).
        "data": plan_data(fac, state.root, port),
        # Prometheus and the facility exporter (monitoring/), when facility.yaml enables metrics.
        "metrics": plan_metrics(fac, dashboards_port, previous),
        # Names (never values) of variables `af up` hands on to the hub, such as the OIDC client secret.
        "hub_env": [fac.auth.oidc.client_secret_env] if fac.auth.type == "oidc" and fac.auth.oidc else [],
        "secrets": complete_secrets(old),
    }


def write_runtime(state: StateDir, runtime: dict[str, Any]) -> None:
    state.root.mkdir(parents=True, exist_ok=True)
    state.logs.mkdir(exist_ok=True)
    tmp = state.runtime_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(runtime, out, indent=2)
    tmp.replace(state.runtime_file)
