"""Load facility.yaml: parse, validate against the schema, check cross-references, build the model.

Reload policy, the same in every process: long-running code (the hub's spawner, the gateways'
backends, the token files, the notebook's Dask panel) asks ``current(path)``, which parses the
file again only when its modification time changes, so an operator's edit reaches the next spawn
or cluster without a restart and an unchanged file is not parsed again. One-shot commands
(`af up`, `af run`, `af check-facility`) call ``load``.

Every problem is reported as ``<file>: <key path>: <what is wrong>`` naming the bad value and
what is allowed, all problems at once, so an operator fixes the file in one pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from facility.model import (
    IDLE_GROUP_PREFIX,
    OIDC,
    Allowance,
    Auth,
    Backend,
    Cache,
    Ceilings,
    DaskLimits,
    Data,
    Facility,
    Hub,
    IdleCull,
    Image,
    LoginThrottle,
    Metrics,
    Queue,
    Quota,
    Quotas,
    Range,
    Rucio,
    Spawn,
    UnixAccounts,
    Usage,
)

DEFAULT_CVMFS_ROOT = "/cvmfs"
ENV_FACILITY_FILE = "AF_FACILITY"


class FacilityError(ValueError):
    """facility.yaml is missing, unreadable or invalid; ``problems`` lists every finding."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is not a valid facility description:\n{listing}")


@cache
def schema() -> dict[str, Any]:
    text = resources.files("facility").joinpath("schema.yaml").read_text()
    return yaml.safe_load(text)


def embedded_default_path() -> Path:
    """The facility.yaml shipped with the project (local backend only)."""
    return Path(str(resources.files("facility").joinpath("embedded.yaml")))


def default_path() -> Path:
    return Path(os.environ.get(ENV_FACILITY_FILE) or embedded_default_path())


def current(path: str | os.PathLike[str] | None = None) -> Facility:
    """facility.yaml as it is now (default: $AF_FACILITY or the embedded one), parsed again only when
    its modification time changed since the last call (the reload policy above)."""
    path = Path(path) if path else default_path()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        return load(path)  # raises FacilityError naming the file
    return _load_version(path, mtime_ns)


@lru_cache(maxsize=8)
def _load_version(path: Path, mtime_ns: int) -> Facility:
    return load(path)


def load(path: str | os.PathLike[str] | None = None) -> Facility:
    """Load and validate a facility.yaml file (default: $AF_FACILITY or the embedded one)."""
    path = Path(path) if path is not None else default_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FacilityError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise FacilityError(str(path), [f"cannot be read: {exc.strerror}"]) from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "facility.yaml") -> Facility:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FacilityError(source, [f"{where}not valid YAML ({problem})"]) from None
    return from_dict(raw, source)


def from_dict(raw: Any, source: str = "facility.yaml") -> Facility:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in _leaf_errors(errors)]
    if not problems:
        problems = list(_cross_reference_problems(raw))
    if problems:
        raise FacilityError(source, problems)
    return _build(raw)


def key_path(parts: Iterable[Any]) -> str:
    """['backends', 0, 'kind'] -> 'backends[0].kind'."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _leaf_errors(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    # anyOf/oneOf errors hide the useful message in their context; report the deepest ones.
    leaves = []
    for error in errors:
        leaves.extend(_leaf_errors(list(error.context)) if error.context else [error])
    return leaves


def _describe(error: jsonschema.ValidationError) -> str:
    where = key_path(error.absolute_path)
    value = error.instance
    rule = error.validator
    expected = error.validator_value
    if rule == "required":
        missing = [k for k in expected if k not in value]
        return f"{where}: missing required key {', '.join(repr(k) for k in missing)}"
    if rule == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        return f"{where}: unknown key {', '.join(repr(k) for k in extra)}; allowed keys: {', '.join(allowed)}"
    if rule == "enum":
        return f"{where}: {value!r} is not allowed; allowed: {', '.join(map(str, expected))}"
    if rule == "type":
        return f"{where}: {value!r} is a {type(value).__name__}; expected {expected}"
    if rule == "pattern":
        hint = error.schema.get("description", f"must match {expected}")
        return f"{where}: {value!r} is not allowed; {hint}"
    if rule in ("minimum", "maximum"):
        sign = ">=" if rule == "minimum" else "<="
        return f"{where}: {value!r} is out of range; expected a number {sign} {expected}"
    if rule in ("minItems", "minLength"):
        return f"{where}: {value!r} is too short; at least {expected} expected"
    return f"{where}: {error.message}"


def _ranges(parent: dict[str, Any], prefix: str) -> Iterable[tuple[str, dict[str, Any]]]:
    for key, value in (parent or {}).items():
        if isinstance(value, dict) and "max" in value:
            yield f"{prefix}.{key}", value


def _cross_reference_problems(raw: dict[str, Any]) -> Iterable[str]:
    """Checks the schema cannot express: defaults inside limits, names that refer to others."""
    image_names = [i["name"] for i in raw["images"]]
    cache_names = [c["name"] for c in (raw.get("data") or {}).get("caches", [])]
    yield from _duplicates("images", image_names)
    yield from _duplicates("backends", [b["name"] for b in raw["backends"]])
    if sum(1 for i in raw["images"] if i.get("default")) > 1:
        yield "images: more than one image is marked default: true; mark at most one"
    for index, backend in enumerate(raw["backends"]):
        where = f"backends[{index}]"
        ranges = list(_ranges(backend["resources"], f"{where}.resources"))
        ranges += list(_ranges(backend.get("dask", {}), f"{where}.dask"))
        for path, rng in ranges:
            low, high = rng.get("min", 0), rng["max"]
            if low > high:
                yield f"{path}: min {low} is larger than max {high}"
            elif "default" in rng and not low <= rng["default"] <= high:
                yield f"{path}.default: {rng['default']} is outside [{low}, {high}]"
        site = backend.get("site") or {}
        if backend.get("kind") == "kubernetes" and "home_storage_gb" in site and "offload" in site:
            yield (
                f"{where}.site.home_storage_gb: an offloaded backend's pods run on an interLink virtual "
                "node, which attaches no volume claims; leave it out there (homes stay at the HPC centre)"
            )
        for name in backend.get("images", []):
            if name not in image_names:
                yield f"{where}.images: {name!r} is not an image; known images: {', '.join(image_names)}"
        cache_name = backend.get("data_cache")
        if cache_name and cache_name not in cache_names:
            known = ", ".join(cache_names) or "none"
            yield f"{where}.data_cache: {cache_name!r} is not in data.caches; known caches: {known}"
        if backend.get("gpu_types") and not backend["resources"].get("gpus", {}).get("max"):
            yield f"{where}.gpu_types: listed but resources.gpus.max is 0 or missing"
        if (backend.get("site") or {}).get("offload") and backend["kind"] != "kubernetes":
            kind = backend["kind"]
            yield f"{where}.site.offload: only a kubernetes backend can offload through interLink, not {kind}"
    yield from _url_problems(raw)
    auth = raw.get("auth") or {}
    if auth.get("type") == "oidc" and "oidc" not in auth:
        yield "auth.oidc: required when auth.type is 'oidc'"
    if auth.get("type") == "oidc" and auth.get("event_organisers"):
        yield "auth.event_organisers: only for auth.type 'local'; events make their own logins"
    if auth.get("type") == "oidc" and auth.get("shared_password"):
        yield "auth.shared_password: only for auth.type 'local'; the identity provider checks passwords"
    if auth.get("type") == "oidc" and "login_throttle" in auth:
        yield "auth.login_throttle: only for auth.type 'local'; the identity provider throttles its own logins"
    for group in ((raw.get("hub") or {}).get("idle_cull") or {}).get("groups", {}):
        if group.startswith(IDLE_GROUP_PREFIX):
            yield f"hub.idle_cull.groups: {group!r} starts with {IDLE_GROUP_PREFIX!r}, kept for the cullers' own groups"
    backend_names = [b["name"] for b in raw["backends"]]
    for index, allowance in enumerate(auth.get("allowances", [])):
        where = f"auth.allowances[{index}]"
        for key, known in (("backends", backend_names), ("images", image_names)):
            for name in allowance.get(key, []):
                if name not in known:
                    yield f"{where}.{key}: {name!r} is not one of the {key}; known {key}: {', '.join(known)}"
    yield from _quota_problems(raw, backend_names)


def _quota_problems(raw: dict[str, Any], backend_names: list[str]) -> Iterable[str]:
    """Quotas name real backends and, with local logins, groups that auth.groups defines."""
    quotas = raw.get("quotas") or {}
    named = [("quotas.default", quotas.get("default") or {})]
    named += [(f"quotas.groups.{group}", quota or {}) for group, quota in (quotas.get("groups") or {}).items()]
    for where, quota in named:
        for name in quota.get("backends") or {}:
            if name not in backend_names:
                yield f"{where}.backends: {name!r} is not a backend; known backends: {', '.join(backend_names)}"
    auth = raw.get("auth") or {}
    if auth.get("type", "local") == "local":  # an identity provider's groups are known only at login
        known = sorted(auth.get("groups") or {})
        for group in quotas.get("groups") or {}:
            if group not in known:
                listed = ", ".join(known) or "none"
                yield f"quotas.groups: {group!r} is not a group of auth.groups; known groups: {listed}"


def _url_problems(raw: dict[str, Any]) -> Iterable[str]:
    """URLs whose host or port cannot be used (urlsplit raises on a port above 65535)."""
    data = raw.get("data") or {}
    urls = [("hub.bind_url", (raw.get("hub") or {}).get("bind_url"))]
    urls.append(("data.origin.url", (data.get("origin") or {}).get("url")))
    urls += [(f"data.caches[{i}].url", cache.get("url")) for i, cache in enumerate(data.get("caches", []))]
    for where, url in urls:
        if not isinstance(url, str):
            continue
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            yield f"{where}: {url!r} is not a usable URL ({exc}); ports are 1 to 65535"
            continue
        if port == 0:
            yield f"{where}: {url!r} has port 0; ports are 1 to 65535"
        elif not parts.hostname:
            yield f"{where}: {url!r} names no host"


def _duplicates(where: str, names: list[str]) -> Iterable[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            yield f"{where}: the name {name!r} is used twice; names must be unique"
        seen.add(name)


def _range(raw: dict[str, Any] | None, fallback: Range) -> Range:
    return Range.from_dict(raw) if raw else fallback


def _build_backend(raw: dict[str, Any]) -> Backend:
    res = raw["resources"]
    cores, memory = Range.from_dict(res["cores"]), Range.from_dict(res["memory_gb"])
    gpus = _range(res.get("gpus"), Range(max=0))
    dask = raw.get("dask", {})
    limits = DaskLimits(
        workers=_range(dask.get("workers"), Range(max=4, min=0, default=2)),
        worker_cores=_range(dask.get("worker_cores"), Range(max=cores.max, min=1, default=1)),
        worker_memory_gb=_range(dask.get("worker_memory_gb"), Range(max=memory.max, min=1, default=min(2, memory.max))),
        worker_gpus=_range(dask.get("worker_gpus"), Range(max=0)),
        idle_timeout_minutes=dask.get("idle_timeout_minutes", 60),
    )
    return Backend(
        name=raw["name"],
        kind=raw["kind"],
        label=raw["label"],
        description=raw.get("description", ""),
        cores=cores,
        memory_gb=memory,
        gpus=gpus,
        walltime_hours=Range.from_dict(res["walltime_hours"]) if "walltime_hours" in res else None,
        gpu_types=tuple(raw.get("gpu_types", ())),
        queues=tuple(
            Queue(q["name"], q.get("label", q["name"]), q.get("max_walltime_hours")) for q in raw.get("queues", [])
        ),
        allowed_groups=tuple(raw.get("allowed_groups", ())),
        image_names=tuple(raw["images"]) if "images" in raw else None,
        dask=limits,
        data_cache=raw.get("data_cache"),
        container_runtime=raw.get("container_runtime", "none"),
        site=dict(raw.get("site", {})),
    )


def _build_allowance(raw: dict[str, Any]) -> Allowance:
    def names(key: str) -> tuple[str, ...] | None:
        return tuple(raw[key]) if key in raw else None

    return Allowance(names("groups"), names("backends"), names("images"), names("gpu_types"), dict(raw.get("max", {})))


def _ceilings(raw: dict[str, Any], under: Ceilings | None = None) -> Ceilings:
    """Ceilings from a quota's keys; keys it leaves out keep those of `under` (the default)."""
    base = dataclasses.asdict(under) if under else {}
    return Ceilings(**{**base, **{k: v for k, v in raw.items() if k != "backends"}})


def _quota(raw: dict[str, Any], under: Quota | None = None) -> Quota:
    backends = dict(under.backends) if under else {}
    for name, ceilings in (raw.get("backends") or {}).items():
        backends[name] = _ceilings(ceilings, backends.get(name))
    return Quota(overall=_ceilings(raw, under.overall if under else None), backends=backends)


def _build_quotas(raw: dict[str, Any] | None) -> Quotas:
    raw = raw or {}
    default = _quota(raw.get("default") or {})
    groups = {name: _quota(quota or {}, default) for name, quota in (raw.get("groups") or {}).items()}
    return Quotas(default=default, groups=groups)


def _build(raw: dict[str, Any]) -> Facility:
    data_raw = raw.get("data")
    data = None
    if data_raw:
        data = Data(
            origin_url=data_raw["origin"]["url"],
            origin_local_root=data_raw["origin"].get("local_root"),
            caches=tuple(Cache(c["name"], c["url"], c.get("local_root")) for c in data_raw.get("caches", [])),
            prefixes=tuple(data_raw.get("prefixes", ["/"])),
            cvmfs_root=data_raw.get("cvmfs_root", DEFAULT_CVMFS_ROOT),
            require_token=bool(data_raw.get("require_token", False)),
            rucio=Rucio(**data_raw["rucio"]) if data_raw.get("rucio") else None,
        )
    auth_raw = raw.get("auth") or {"type": "local"}
    oidc_raw = auth_raw.get("oidc")
    oidc = None
    if oidc_raw:
        oidc = OIDC(
            issuer=oidc_raw["issuer"],
            client_id=oidc_raw["client_id"],
            client_secret_env=oidc_raw.get("client_secret_env", "AF_OIDC_CLIENT_SECRET"),
            scopes=tuple(oidc_raw.get("scopes", ["openid", "profile", "email"])),
            username_claim=oidc_raw.get("username_claim", "preferred_username"),
            groups_claim=oidc_raw.get("groups_claim", "groups"),
            admin_groups=tuple(oidc_raw.get("admin_groups", ())),
            refresh_age_seconds=oidc_raw.get("refresh_age_seconds", 300),
        )
    hub_raw = raw.get("hub") or {}
    return Facility(
        name=raw["name"],
        title=raw.get("title", raw["name"]),
        backends=tuple(_build_backend(b) for b in raw["backends"]),
        images=tuple(
            Image(i["name"], i["label"], i["registry"], i.get("cvmfs"), bool(i.get("default"))) for i in raw["images"]
        ),
        data=data,
        auth=Auth(
            type=auth_raw["type"],
            admin_users=tuple(auth_raw.get("admin_users", ())),
            groups={g: tuple(users) for g, users in (auth_raw.get("groups") or {}).items()},
            oidc=oidc,
            allowances=tuple(_build_allowance(a) for a in auth_raw.get("allowances", [])),
            unix_accounts=UnixAccounts(**(auth_raw.get("unix_accounts") or {})),
            shared_password=bool(auth_raw.get("shared_password", False)),
            login_throttle=LoginThrottle(**(auth_raw.get("login_throttle") or {})),
            event_organisers=tuple(auth_raw.get("event_organisers", ())),
        ),
        hub=Hub(
            bind_url=hub_raw.get("bind_url", "http://127.0.0.1:8000"),
            idle_cull=IdleCull(**(hub_raw.get("idle_cull") or {})),
            start_timeout_seconds=hub_raw.get("start_timeout_seconds", 120),
            spawn=Spawn(**(hub_raw.get("spawn") or {})),
            on_down=hub_raw.get("on_down", "stop"),
            subdomains=bool(hub_raw.get("subdomains", False)),
        ),
        metrics=Metrics(**(raw.get("metrics") or {})),
        quotas=_build_quotas(raw.get("quotas")),
        usage=Usage(**(raw.get("usage") or {})),
        raw=raw,
    )
