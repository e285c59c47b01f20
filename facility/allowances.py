"""What one user may use on one backend: the backend's limits narrowed by facility.yaml's auth.allowances.

A user gets the most generous of the allowances that name one of their groups (an allowance
without ``groups`` applies to everyone) and that cover the backend (without ``backends``: all).
When auth.allowances is present and none applies, the user may not use the backend at all.
Admins always get the backend's full limits. The result is an ordinary Backend, so the spawn
form, validate_spawn and the dask-gateway options all read the narrowed limits the same way.
"""

from __future__ import annotations

from dataclasses import replace

from facility.model import Allowance, Backend, Facility, Range

# Keys of an allowance's `max` and the Backend / DaskLimits range each one caps.
SERVER_CEILINGS = ("cores", "memory_gb", "gpus", "walltime_hours")
DASK_CEILINGS = {
    "workers": "workers",
    "worker_cores": "worker_cores",
    "worker_memory_gb": "worker_memory_gb",
    "worker_gpus": "worker_gpus",
}
CEILINGS = (*SERVER_CEILINGS, *DASK_CEILINGS)


def matching(fac: Facility, backend: Backend, groups: set[str] | frozenset[str]) -> list[Allowance]:
    return [a for a in fac.auth.allowances if a.applies_to(backend.name, groups)]


def _union(values: list[tuple[str, ...] | None]) -> set[str] | None:
    """None (no restriction) wins; otherwise everything any allowance grants."""
    if any(v is None for v in values):
        return None
    return {item for v in values for item in v}  # type: ignore[union-attr]


def _ceiling(allowances: list[Allowance], key: str) -> int | None:
    caps = [a.max.get(key) for a in allowances]
    return None if any(c is None for c in caps) else max(caps)  # type: ignore[type-var]


def _cap(rng: Range, cap: int | None) -> Range | None:
    """The range limited to cap; None when even its minimum is above the cap."""
    if cap is None or cap >= rng.max:
        return rng
    if cap < rng.min:
        return None
    return Range(max=cap, min=rng.min, default=min(rng.default, cap))


def for_user(
    fac: Facility, backend: Backend, groups: set[str] | frozenset[str], is_admin: bool = False
) -> Backend | None:
    """The backend as this user may use it, or None if they may not use it at all."""
    if not backend.allows_user(groups, is_admin):
        return None
    if is_admin or not fac.auth.allowances:
        return backend
    granted = matching(fac, backend, groups)
    if not granted:
        return None
    server = {}
    for key in SERVER_CEILINGS:
        rng = getattr(backend, key)
        if rng is None:
            continue
        capped = _cap(rng, _ceiling(granted, key))
        if capped is None:
            return None
        server[key] = capped
    dask = {}
    for key, attr in DASK_CEILINGS.items():
        capped = _cap(getattr(backend.dask, attr), _ceiling(granted, key))
        if capped is None:
            return None
        dask[attr] = capped
    images = [i.name for i in fac.images_for(backend)]
    allowed_images = _union([a.images for a in granted])
    if allowed_images is not None:
        images = [name for name in images if name in allowed_images]
        if not images:
            return None
    gpu_types = backend.gpu_types
    # An allowance that grants no GPUs grants no GPU type either.
    allowed_types = _union([() if a.max.get("gpus") == 0 else a.gpu_types for a in granted])
    if allowed_types is not None:
        gpu_types = tuple(t for t in gpu_types if t in allowed_types) if gpu_types else tuple(sorted(allowed_types))
        if not gpu_types:
            # Types are listed but none is granted: no GPUs for this user here.
            server["gpus"] = Range(max=0)
            dask["worker_gpus"] = Range(max=0)
    if server.get("gpus", backend.gpus).max == 0:
        gpu_types = ()
    return replace(
        backend,
        **server,
        dask=replace(backend.dask, **dask) if dask else backend.dask,
        image_names=tuple(images),
        gpu_types=gpu_types,
    )


def within(fac: Facility, backend: Backend, allowance: Allowance, groups: set[str] | frozenset[str]) -> Backend | None:
    """The backend (already narrowed for the user) narrowed further by one more allowance, such as
    an event's (facility.events): what both grant, or None if that is nothing."""
    scoped = replace(fac, auth=replace(fac.auth, allowances=(replace(allowance, groups=None),)))
    return for_user(scoped, backend, groups)


def usable_backends(
    fac: Facility, groups: set[str] | frozenset[str], is_admin: bool = False, also: Allowance | None = None
) -> list[Backend]:
    """Every backend this user may use, each narrowed to what they may ask for on it (and, with
    `also`, to what that further allowance grants)."""
    usable = [b for b in (for_user(fac, backend, groups, is_admin) for backend in fac.backends) if b is not None]
    if also is None:
        return usable
    return [b for b in (within(fac, backend, also, groups) for backend in usable) if b is not None]
