"""Typed view of a validated facility.yaml.

Built only by facility.loader after schema validation, so constructors trust their input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Range:
    """An integer quantity a user picks, within [min, max]."""

    max: int
    min: int = 0
    default: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Range:
        low = raw.get("min", 0)
        return cls(max=raw["max"], min=low, default=raw.get("default", low))

    def allows(self, value: int) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True)
class Queue:
    name: str
    label: str
    max_walltime_hours: int | None = None


@dataclass(frozen=True)
class DaskLimits:
    workers: Range
    worker_cores: Range
    worker_memory_gb: Range
    worker_gpus: Range
    idle_timeout_minutes: int = 60


@dataclass(frozen=True)
class Backend:
    name: str
    kind: str
    label: str
    description: str
    cores: Range
    memory_gb: Range
    gpus: Range
    walltime_hours: Range | None
    gpu_types: tuple[str, ...]
    queues: tuple[Queue, ...]
    allowed_groups: tuple[str, ...]
    image_names: tuple[str, ...] | None
    dask: DaskLimits
    data_cache: str | None
    container_runtime: str
    # The kind's scheduler settings as written; read them typed through the kind's SiteSettings
    # (backends/<kind>/settings.py), never with .get().
    site: dict[str, Any] = field(default_factory=dict)

    @property
    def has_gpus(self) -> bool:
        return self.gpus.max > 0

    def allows_user(self, groups: set[str] | frozenset[str], is_admin: bool = False) -> bool:
        """Whether a user with these groups may use this backend."""
        return is_admin or not self.allowed_groups or bool(set(self.allowed_groups) & set(groups))


@dataclass(frozen=True)
class Image:
    name: str
    label: str
    registry: str
    cvmfs: str | None
    default: bool


@dataclass(frozen=True)
class Cache:
    name: str
    url: str
    local_root: str | None


@dataclass(frozen=True)
class Rucio:
    """data.rucio: the Rucio server `af up` runs for the data lake (af/rucio_server.py)."""

    url: str
    scope: str = "af"
    rse: str = "AF_DATALAKE"


@dataclass(frozen=True)
class Data:
    origin_url: str
    origin_local_root: str | None
    caches: tuple[Cache, ...]
    prefixes: tuple[str, ...]
    cvmfs_root: str
    require_token: bool = False
    rucio: Rucio | None = None

    def cache(self, name: str | None) -> Cache | None:
        return next((c for c in self.caches if c.name == name), None)


@dataclass(frozen=True)
class OIDC:
    issuer: str
    client_id: str
    client_secret_env: str
    scopes: tuple[str, ...]
    username_claim: str
    groups_claim: str
    admin_groups: tuple[str, ...]
    refresh_age_seconds: int = 300


@dataclass(frozen=True)
class Allowance:
    """What members of some groups may use (auth.allowances); None means "no restriction"."""

    groups: tuple[str, ...] | None
    backends: tuple[str, ...] | None
    images: tuple[str, ...] | None
    gpu_types: tuple[str, ...] | None
    max: dict[str, int] = field(default_factory=dict)

    def applies_to(self, backend: str, groups: set[str] | frozenset[str]) -> bool:
        in_group = self.groups is None or bool(set(self.groups) & set(groups))
        return in_group and (self.backends is None or backend in self.backends)


@dataclass(frozen=True)
class UnixAccounts:
    """auth.unix_accounts: which Unix account runs each user's processes (see facility.accounts)."""

    mode: str = "per-user"
    prefix: str = "af-"
    group: str = "af-users"

    @property
    def per_user(self) -> bool:
        return self.mode == "per-user"


@dataclass(frozen=True)
class LoginThrottle:
    """auth.login_throttle (local auth): failed logins a name or an address may have within 5
    minutes before it waits `lockout_seconds` after its latest failure."""

    failures_per_user: int = 5
    failures_per_address: int = 20
    lockout_seconds: int = 30


@dataclass(frozen=True)
class Auth:
    type: str
    admin_users: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    oidc: OIDC | None
    allowances: tuple[Allowance, ...] = ()
    unix_accounts: UnixAccounts = field(default_factory=UnixAccounts)
    shared_password: bool = False  # local auth: a workshop's shared password besides own credentials
    login_throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle())
    event_organisers: tuple[str, ...] = ()  # groups whose members may create events on the hub's page


@dataclass(frozen=True)
class Spawn:
    """hub.spawn: how many notebook servers start on the hub's host at once, and how long one may
    take to answer. The defaults suit a 2-core host (30 logins at once all get their server)."""

    concurrent: int = 4
    queue_limit: int = 200
    http_timeout_seconds: int = 120


IDLE_GROUP_PREFIX = "af-idle-"  # the hub groups the idle cullers see (hub_config.idle_groups)


@dataclass(frozen=True)
class IdleCull:
    """hub.idle_cull: notebook servers idle this many minutes are stopped (0: never). A user in
    groups listed under `groups` gets the longest of their groups' timeouts, others `minutes`."""

    minutes: int = 0
    groups: dict[str, int] = field(default_factory=dict)
    check_every_seconds: int = 60

    def minutes_for(self, groups: set[str] | frozenset[str]) -> int:
        """The user's idle timeout in minutes (0: never culled)."""
        mine = [self.groups[g] for g in groups if g in self.groups]
        if not mine:
            return self.minutes
        return 0 if 0 in mine else max(mine)

    @property
    def timeouts(self) -> tuple[int, ...]:
        """Every timeout some user can get, in minutes (one culler each)."""
        return tuple(sorted({m for m in (self.minutes, *self.groups.values()) if m}))

    @staticmethod
    def group_of(minutes: int) -> str:
        """The hub group of the users whose timeout is `minutes`."""
        return f"{IDLE_GROUP_PREFIX}{minutes}m"


@dataclass(frozen=True)
class Hub:
    bind_url: str
    idle_cull: IdleCull
    start_timeout_seconds: int
    spawn: Spawn = field(default_factory=Spawn)
    on_down: str = "stop"  # "keep": `af down` leaves notebook servers and Dask clusters running
    subdomains: bool = False  # each user's server on its own origin (JupyterHub's subdomain_host)


@dataclass(frozen=True)
class Metrics:
    """metrics: the Prometheus that `af up` runs (monitoring/), off unless enabled."""

    enabled: bool = False
    scrape_interval_seconds: int = 15
    evaluation_interval_seconds: int = 15
    alert_after_seconds: int = 120
    retention_days: int = 15


@dataclass(frozen=True)
class Usage:
    """usage: how often the usage sampler (monitoring/usage_sampler.py) reads what everyone holds."""

    sample_interval_seconds: int = 60


QUOTA_KEYS = ("cores", "memory_gb", "gpus", "servers", "clusters", "runs")


@dataclass(frozen=True)
class Ceilings:
    """The most one person may hold at once of each quota key; None means no ceiling."""

    cores: int | None = None
    memory_gb: int | None = None
    gpus: int | None = None
    servers: int | None = None
    clusters: int | None = None
    runs: int | None = None  # runs of `af run` under way

    def get(self, key: str) -> int | None:
        return getattr(self, key)


@dataclass(frozen=True)
class Quota:
    """One quota of facility.yaml's `quotas`: ceilings over all backends and per backend."""

    overall: Ceilings = field(default_factory=Ceilings)
    backends: dict[str, Ceilings] = field(default_factory=dict)


@dataclass(frozen=True)
class Quotas:
    """facility.yaml's `quotas`: the default and the quota of each group (the default's keys filled in)."""

    default: Quota = field(default_factory=Quota)
    groups: dict[str, Quota] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return self.default != Quota() or bool(self.groups)


@dataclass(frozen=True)
class Facility:
    name: str
    title: str
    backends: tuple[Backend, ...]
    images: tuple[Image, ...]
    data: Data | None
    auth: Auth
    hub: Hub
    metrics: Metrics = field(default_factory=Metrics)
    quotas: Quotas = field(default_factory=Quotas)
    usage: Usage = field(default_factory=Usage)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(f"no backend named {name!r}; known: {', '.join(b.name for b in self.backends)}")

    def image(self, name: str) -> Image:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(f"no image named {name!r}; known: {', '.join(i.name for i in self.images)}")

    @property
    def default_image(self) -> Image:
        return next((i for i in self.images if i.default), self.images[0])

    def images_for(self, backend: Backend) -> tuple[Image, ...]:
        if backend.image_names is None:
            return self.images
        return tuple(self.image(n) for n in backend.image_names)

    def backends_for(self, groups: set[str] | frozenset[str], is_admin: bool = False) -> tuple[Backend, ...]:
        return tuple(b for b in self.backends if b.allows_user(groups, is_admin))
