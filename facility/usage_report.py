"""Recorded usage (facility.usage) summed by user, group or backend, in hours: what `af usage` and
the hub's page /hub/usage show.

By group, a user's use counts for each of the groups they were in when it was sampled (users in
no group under NO_GROUP), so the groups' sums may add up to more than the total.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from facility.usage import UsageRow

BY = ("user", "group", "backend")
NO_GROUP = "(no group)"
HOUR_S = 3600.0


@dataclass(frozen=True)
class Total:
    key: str
    core_hours: float
    memory_gb_hours: float
    gpu_hours: float


def checked_day(text: str) -> str:
    """A day written YYYY-MM-DD, as the same text; ValueError with words otherwise."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a date; write it like 2026-03-05") from None


def _keys(row: UsageRow, by: str) -> tuple[str, ...]:
    if by == "user":
        return (row.user,)
    if by == "backend":
        return (row.backend,)
    return row.groups or (NO_GROUP,)


def _total(key: str, rows: Iterable[UsageRow]) -> Total:
    rows = list(rows)
    return Total(
        key,
        sum(r.core_seconds for r in rows) / HOUR_S,
        sum(r.memory_gb_seconds for r in rows) / HOUR_S,
        sum(r.gpu_seconds for r in rows) / HOUR_S,
    )


def totals(rows: Iterable[UsageRow], by: str) -> list[Total]:
    """One Total per user, group or backend (`by`), the most core-hours first."""
    if by not in BY:
        raise ValueError(f"{by!r} is not a way to sum usage; choose one of {', '.join(BY)}")
    grouped: dict[str, list[UsageRow]] = {}
    for row in rows:
        for key in _keys(row, by):
            grouped.setdefault(key, []).append(row)
    found = [_total(key, mine) for key, mine in grouped.items()]
    return sorted(found, key=lambda t: (-t.core_hours, t.key))


def overall(rows: Iterable[UsageRow]) -> Total:
    """Everything together (each row once, whatever the grouping)."""
    return _total("all", rows)


def hours(value: float) -> str:
    """Hours as the table and the page show them: to 3.6 s, so that a short use still shows."""
    return f"{value:,.3f}"
