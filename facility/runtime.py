"""runtime.json: the running facility's ports, secrets and folders, as one typed contract.

`af up` plans it and writes it (``write_runtime``); the hub's and the gateways' configuration
files and the dashboard service read it (``read_runtime``); the Helm chart renders the same
shape into a Secret (tests/test_architecture.py reads the rendered one with ``read_runtime``'s
parser). Reading is strict: a missing or unknown key is an error naming it, so a runtime.json
from another version fails at start-up instead of deep inside a component.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_RUNTIME = "AF_RUNTIME"
ENV_STATE_DIR = "AF_STATE_DIR"
FILE_NAME = "runtime.json"
# Root's facility is the host's: its state lies where facility accounts may pass (af up opens only the
# few entries they need), never in /root, which would need an ACL that opens root's home (issue 17).
SYSTEM_STATE_DIR = Path("/var/lib/analysis-facility/state")  # beside the test daemons' builds


def default_state_dir() -> Path:
    """Where a facility keeps its state unless told: $AF_STATE_DIR, else $XDG_STATE_HOME's or, for
    root, /var/lib/analysis-facility/state, else ~/.local/state/analysis-facility."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "analysis-facility"
    if os.geteuid() == 0:
        return SYSTEM_STATE_DIR
    return Path.home() / ".local" / "state" / "analysis-facility"


# Written by `af down` before it stops the processes: gateways then stop their clusters (a plain
# restart keeps them); `af up` removes it.
STOPPING_FILE = "stopping"


class RuntimeFileError(ValueError):
    """runtime.json is missing, unreadable or not in the shape this version writes."""


@dataclass(frozen=True)
class Ports:
    public: int
    hub_api: int
    proxy_api: int
    dashboards: int | None = None  # the hub's Dask dashboard service; not in Kubernetes yet


@dataclass(frozen=True)
class GatewayAddress:
    """Where one backend's dask-gateway answers and the token it presents to the hub."""

    kind: str
    url: str
    api_token: str
    port: int | None = None  # gateways `af up` runs on this host: proxy port and API port
    api_port: int | None = None


@dataclass(frozen=True)
class Secrets:
    """The generated secrets: facility.secrets.SECRETS lists how each is made (the same names)."""

    cookie_secret: str
    proxy_token: str
    user_password: str
    admin_password: str
    gateway_db_key: str
    crypt_key: str  # JupyterHub's auth_state (OIDC tokens)
    dashboard_secret: str  # Dask dashboard keys derive from it (facility.dashboard_keys)
    services_key: str  # hub service tokens derive from it (facility.hub_services)


@dataclass(frozen=True)
class Runtime:
    state_dir: str
    facility_file: str
    public_url: str
    ports: Ports
    gateways: dict[str, GatewayAddress]
    secrets: Secrets
    # The effective data lake (origin, caches, prefixes, require_token); its shape is af.xrootd's plan.
    data: dict[str, Any] = field(default_factory=dict)
    # Names (never values) of variables `af up` hands on to the hub, such as the OIDC client secret.
    hub_env: tuple[str, ...] = ()
    # Prometheus, the facility exporter and the operator page (ports, tokens); its shape is
    # monitoring.plan's. Empty when facility.yaml leaves metrics off.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def file(self) -> Path:
        return self.state_path / FILE_NAME

    @property
    def stopping_file(self) -> Path:
        return self.state_path / STOPPING_FILE

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; absent optional values are left out, as the chart leaves them out."""
        return _without_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Any, source: str = FILE_NAME) -> Runtime:
        top = _fields(cls, raw, source, "")
        gateways = top["gateways"]
        if not isinstance(gateways, dict):
            raise RuntimeFileError(f"{source}: gateways: expected an object of backend name -> gateway")
        return cls(
            **{
                **top,
                "ports": Ports(**_fields(Ports, top["ports"], source, "ports.")),
                "secrets": Secrets(**_fields(Secrets, top["secrets"], source, "secrets.")),
                "gateways": {
                    name: GatewayAddress(**_fields(GatewayAddress, gw, source, f"gateways.{name}."))
                    for name, gw in gateways.items()
                },
                "hub_env": tuple(top.get("hub_env", ())),
            }
        )


def gateway_service_name(backend: str) -> str:
    """The JupyterHub service name of a backend's dask-gateway."""
    return f"dask-gateway-{backend}"


def read_runtime(path: str | os.PathLike[str] | None = None) -> Runtime:
    """The runtime.json at `path` (default: $AF_RUNTIME), checked key by key."""
    path = path or os.environ.get(ENV_RUNTIME)
    if not path:
        raise RuntimeError(f"${ENV_RUNTIME} is not set; start the facility with `af up`")
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RuntimeFileError(f"{path}: not found; start the facility with `af up`") from None
    except ValueError as exc:
        raise RuntimeFileError(f"{path}: not valid JSON ({exc})") from None
    return Runtime.from_dict(raw, str(path))


def write_runtime(runtime: Runtime) -> Path:
    """Write runtime.json into the runtime's state folder, readable by its owner only, atomically."""
    path = runtime.file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(runtime.to_dict(), out, indent=2)
    tmp.replace(path)
    return path


def _fields(cls: type, raw: Any, source: str, where: str) -> dict[str, Any]:
    """raw's keys checked against the dataclass' fields: every required one present, none unknown."""
    if not isinstance(raw, dict):
        raise RuntimeFileError(f"{source}: {where.rstrip('.') or '(top level)'}: expected an object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise RuntimeFileError(f"{source}: unknown key {where}{unknown[0]}; known keys: {', '.join(known)}")
    missing = [
        name
        for name, f in known.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RuntimeFileError(f"{source}: missing key {where}{missing[0]}")
    return dict(raw)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value
