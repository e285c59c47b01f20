"""Plain words the spawn form and the home page show about a backend and a server.

Kept apart from the spawner so the form's template and the home page's handler say the same.
"""

from __future__ import annotations

from typing import Any

from backends.registry import kind_of
from facility.model import Backend, Facility


def _minutes(n: int) -> str:
    if n % 60 == 0 and n >= 60:
        hours = n // 60
        return f"{hours} hour{'s' * (hours > 1)}"
    return f"{n} minute{'s' * (n != 1)}"


def kind_badge(backend: Backend) -> str:
    """Where the backend runs, when its label does not already say so ("" for "This machine")."""
    where = kind_of(backend).label_of(backend)
    return "" if where.casefold() in backend.label.casefold() else where


def lifetime_lines(fac: Facility, backend: Backend, groups: frozenset[str] = frozenset()) -> list[str]:
    """What idle culling and wall time mean for a server on this backend, one sentence each; the
    idle timeout is the one of the user's `groups` (hub.idle_cull)."""
    lines = []
    idle_minutes = fac.hub.idle_cull.minutes_for(groups)
    if idle_minutes:
        lines.append(
            f"Idle servers stop: after {_minutes(idle_minutes)} with no open JupyterLab tab "
            "and no running code, your server is stopped. Files in your home folder stay."
        )
    else:
        lines.append("Idle servers are not stopped: your server runs until you stop it on the Home page.")
    if backend.walltime_hours:
        lines.append(
            "Wall time: the scheduler ends your server when the wall time you choose below is over, "
            "even while code runs. Save your work before then."
        )
    elif kind_of(backend).is_batch:
        lines.append("Wall time: the site's default wall time of the queue ends your server.")
    else:
        lines.append("Wall time: none on this backend.")
    idle = backend.dask.idle_timeout_minutes
    lines.append(
        f"Dask clusters with no client for {_minutes(idle)} are stopped."
        if idle
        else "Dask clusters run until you stop them."
    )
    return lines


def size_words(options: dict[str, Any]) -> str:
    """A server's size from its user_options, e.g. "1 core, 2 GB, 1 GPU (a100), 4 h wall time"."""
    cores = int(options.get("cores") or 0)
    words = [f"{cores} core{'s' * (cores != 1)}", f"{options.get('memory_gb')} GB memory"]
    gpus = int(options.get("gpus") or 0)
    if gpus:
        words.append(f"{gpus} GPU{'s' * (gpus > 1)}" + (f" ({options['gpu_type']})" if options.get("gpu_type") else ""))
    if options.get("walltime_hours"):
        words.append(f"{options['walltime_hours']} h wall time")
    return ", ".join(words)
