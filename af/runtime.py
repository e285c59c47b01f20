"""Plan the running facility: its folders, ports and secrets, saved as runtime.json (mode 600).

Secrets are kept across `af up` runs so logins and the gateway database survive a restart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from af.rucio_server import plan_rucio
from af.xrootd import plan_data
from backends.registry import kind_of
from facility.model import Facility
from facility.runtime import FILE_NAME, GatewayAddress, Ports, Runtime, RuntimeFileError, Secrets, read_runtime
from facility.runtime import write_runtime as write_runtime_file
from facility.secrets import GENERATORS, complete_secrets
from monitoring.plan import plan_metrics


@dataclass(frozen=True)
class StateDir:
    """Where one facility instance keeps its runtime files, logs and databases."""

    root: Path

    @property
    def runtime_file(self) -> Path:
        return self.root / FILE_NAME

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

    def read_runtime(self) -> Runtime | None:
        """The runtime.json of this state folder; None when no facility was started here."""
        if not self.runtime_file.exists():
            return None
        return read_runtime(self.runtime_file)


def _public_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def plan_runtime(
    fac: Facility, facility_file: Path, state: StateDir, port: int | None = None, previous: Runtime | None = None
) -> Runtime:
    """Ports follow the public port: hub API +1, proxy API +2, gateways +10 upwards (two each)."""
    public = port or _public_port(fac.hub.bind_url)
    gateways: dict[str, GatewayAddress] = {}
    host_backends = [b for b in fac.backends if kind_of(b).runs_on_this_host]
    for index, backend in enumerate(host_backends):
        gw_port = public + 10 + 2 * index
        old_gw = previous.gateways.get(backend.name) if previous else None
        gateways[backend.name] = GatewayAddress(
            kind=backend.kind,
            port=gw_port,
            api_port=gw_port + 1,
            url=f"http://127.0.0.1:{gw_port}",
            api_token=old_gw.api_token if old_gw else GENERATORS["hex"](),
        )
    # The hub's Dask dashboard service (hub_config/dashboard_service.py) listens above the gateways.
    dashboards_port = public + 10 + 2 * len(host_backends)
    old = dataclasses.asdict(previous.secrets) if previous else None
    data = plan_data(fac, state.root, port)
    rucio = plan_rucio(fac, dashboards_port, port, (previous.data.get("rucio") or {}) if previous else {})
    if rucio:
        data["rucio"] = rucio  # the Rucio server above the metrics ports (af.rucio_server)
    return Runtime(
        state_dir=str(state.root),
        facility_file=str(facility_file),
        # With hub.subdomains the hub is http://localhost:<port> and each user's server
        # http://<user>.localhost:<port> (Chromium resolves *.localhost to loopback without DNS).
        public_url=f"http://{'localhost' if fac.hub.subdomains else '127.0.0.1'}:{public}",
        ports=Ports(public=public, hub_api=public + 1, proxy_api=public + 2, dashboards=dashboards_port),
        gateways=gateways,
        # Effective data-lake URLs; the origin and caches on loopback move with --port (af.xrootd).
        data=data,
        # Prometheus and the facility exporter (monitoring/), when facility.yaml enables metrics.
        metrics=plan_metrics(fac, dashboards_port, previous.metrics if previous else None),
        hub_env=(fac.auth.oidc.client_secret_env,) if fac.auth.type == "oidc" and fac.auth.oidc else (),
        # Kept across restarts, so logins and the gateway database survive them (facility.secrets).
        secrets=Secrets(**complete_secrets(old)),
    )


def previous_runtime(state: StateDir) -> Runtime | None:
    """The runtime.json an earlier `af up` left, or None when it is missing or from another version."""
    try:
        return state.read_runtime()
    except RuntimeFileError:
        return None


def write_runtime(state: StateDir, runtime: Runtime) -> None:
    write_runtime_file(runtime)
    state.logs.mkdir(exist_ok=True)
