"""Validate what a user asks for (a notebook server) against facility.yaml and their groups.

The spawn form, the hub's REST API and the batch scripts all go through ``validate_spawn``:
the browser form is a convenience, this is the check that counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from facility.allowances import usable_backends
from facility.model import Allowance, Backend, Facility, Range


class RequestError(ValueError):
    """A request a user may not make; the message says which value and what is allowed."""


@dataclass(frozen=True)
class SpawnRequest:
    """A validated notebook-server request; every field is safe to hand to a spawner."""

    backend: str
    image: str
    cores: int
    memory_gb: int
    gpus: int = 0
    gpu_type: str = ""
    queue: str = ""
    walltime_hours: int = 0

    def as_options(self) -> dict[str, Any]:
        return asdict(self)


def from_form(formdata: Mapping[str, list[str]]) -> dict[str, str]:
    """A form post ({"key": ["value"]}) as plain values; a field sent more than once is refused."""
    values = {}
    for key, sent in formdata.items():
        if len(sent) > 1:
            raise RequestError(f"{key}: sent {len(sent)} times; give one value")
        values[key] = sent[0] if sent else ""
    return values


def _first(options: Mapping[str, Any], key: str) -> Any:
    # One value per field: a list (the REST API takes any JSON) is refused, never cut to an element.
    value = options.get(key)
    if isinstance(value, list | tuple | dict):
        raise RequestError(f"{key}: give one value, not a {'mapping' if isinstance(value, dict) else 'list'}")
    return value


def _integer(options: Mapping[str, Any], key: str, rng: Range, label: str) -> int:
    raw = _first(options, key)
    if raw is None or raw == "":
        return rng.default
    if isinstance(raw, bool):
        raise RequestError(f"{label}: {raw!r} is not a whole number")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise RequestError(f"{label}: {str(raw)[:40]!r} is not a whole number") from None
    if not rng.allows(value):
        raise RequestError(f"{label}: {value} is out of range; choose between {rng.min} and {rng.max}")
    return value


def _choice(options: Mapping[str, Any], key: str, allowed: list[str], default: str, label: str) -> str:
    raw = _first(options, key)
    if raw is None or raw == "":
        return default
    value = str(raw)
    if value not in allowed:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise RequestError(f"{label}: {shown!r} is not available; choose one of: {', '.join(allowed) or 'none'}")
    return value


def allowed_backends(
    facility: Facility, groups: set[str], is_admin: bool = False, also: Allowance | None = None
) -> list[Backend]:
    """The backends this user may use, each narrowed to their allowance (facility.allowances) and,
    for an event's participant, to the event's allowance (`also`)."""
    return usable_backends(facility, groups, is_admin, also)


def validate_spawn(
    facility: Facility,
    options: Mapping[str, Any],
    groups: set[str],
    is_admin: bool = False,
    also: Allowance | None = None,
) -> SpawnRequest:
    """Check every value of a spawn request; raise RequestError on the first that is not allowed."""
    known = {"backend", "image", "cores", "memory_gb", "gpus", "gpu_type", "queue", "walltime_hours"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise RequestError(f"unknown option {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(known))}")
    usable = allowed_backends(facility, groups, is_admin, also)
    if not usable:
        raise RequestError("you are not in any group that may use a backend of this facility")
    name = _choice(options, "backend", [b.name for b in facility.backends], usable[0].name, "backend")
    backend = next((b for b in usable if b.name == name), None)
    if backend is None:
        backend = facility.backend(name)
        if also is not None and name in {b.name for b in allowed_backends(facility, groups, is_admin)}:
            why = "your event's allowance does not cover it"
        elif backend.allows_user(groups, is_admin):
            why = "no allowance of your groups covers it"
        else:
            why = f"it is open to the groups {', '.join(backend.allowed_groups)}"
        usable_names = ", ".join(b.name for b in usable)
        raise RequestError(f"backend: you may not use {name!r} ({why}); you may use: {usable_names}")
    images = [i.name for i in facility.images_for(backend)]
    default_image = facility.default_image.name if facility.default_image.name in images else images[0]
    image = _choice(options, "image", images, default_image, "image")
    cores = _integer(options, "cores", backend.cores, "cores")
    memory = _integer(options, "memory_gb", backend.memory_gb, "memory_gb")
    gpus = _integer(options, "gpus", backend.gpus, "gpus")
    gpu_type = ""
    if gpus and backend.gpu_types:
        gpu_type = _choice(options, "gpu_type", list(backend.gpu_types), "", "gpu_type")
    elif _first(options, "gpu_type"):
        _choice(options, "gpu_type", list(backend.gpu_types) if gpus else [], "", "gpu_type")
    queue = ""
    if backend.queues:
        names = [q.name for q in backend.queues]
        queue = _choice(options, "queue", names, names[0], "queue")
    elif _first(options, "queue"):
        raise RequestError(f"queue: backend {name!r} has no queues to choose from")
    walltime = 0
    if backend.walltime_hours:
        limit = backend.walltime_hours
        cap = next((q.max_walltime_hours for q in backend.queues if q.name == queue and q.max_walltime_hours), None)
        if cap is not None and cap < limit.max:
            limit = Range(max=cap, min=limit.min, default=min(limit.default, cap))
        walltime = _integer(options, "walltime_hours", limit, "walltime_hours")
    elif _first(options, "walltime_hours") not in (None, "", 0):
        raise RequestError(f"walltime_hours: backend {name!r} has no wall time to choose")
    return SpawnRequest(name, image, cores, memory, gpus, gpu_type, queue, walltime)
