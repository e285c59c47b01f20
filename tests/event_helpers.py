"""An event as tests and benchmarks drive it (issue 19): `af event create` with a handout folder,
the handout's logins, and a participant's server opened from the hub onto the event's materials
(nbgitpuller's landing page) and pulled the way that page does."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import requests

from tests.harness import RunningFacility


def minutes_from_now(minutes: float) -> str:
    """An ISO time `minutes` from now (negative: ago), as `af event create --start/--end` take it."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")


def window(start_minutes: float, end_minutes: float) -> tuple[str, ...]:
    """`af event create`'s --start and --end, so many minutes from now."""
    return ("--start", minutes_from_now(start_minutes), "--end", minutes_from_now(end_minutes))


def create_event(running: RunningFacility, tmp: Path, name: str, *args: str, check: bool = True):
    """`af event create NAME ARGS`, its handout written to tmp/NAME-handout."""
    return running.af("event", "create", name, "--handout", str(tmp / f"{name}-handout"), *args, check=check)


def handout_logins(tmp: Path, name: str) -> dict[str, str]:
    """Participant name -> password, from the handout's CSV."""
    with (tmp / f"{name}-handout" / f"{name}-logins.csv").open() as rows:
        return {row["name"]: row["password"] for row in csv.DictReader(rows)}


def landing_of(url: str, headers: dict[str, str]) -> str:
    """Where opening the server from the hub lands: its default URL, nbgitpuller's page."""
    opened = requests.get(url, headers=headers, allow_redirects=False, timeout=30)
    assert opened.status_code in (301, 302), opened.text[-500:]
    return opened.headers["Location"]


def pull_through_landing(running: RunningFacility, page: str, headers: dict[str, str]) -> None:
    """Pull as nbgitpuller's landing page `page` does: it reads the pull's progress from /git-pull/api
    with the same query."""
    pull = requests.get(f"{running.url}{page.replace('/git-pull?', '/git-pull/api?')}", headers=headers, timeout=120)
    assert pull.status_code == 200 and '"phase": "finished"' in pull.text, pull.text[-2000:]
