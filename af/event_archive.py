"""After an event's end, its participants' logins disabled and their homes archived into one file
for the instructors (facility.event_archive), then removed: `af event archive NAME` by hand, and
`af event keep`, which `af up` supervises, for events created with --archive-after-days once that
grace period after their close has passed."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import click

import facility
from af.events import Hub, event, event_named, fail, running_participants, runtime_of
from af.runtime import StateDir
from facility.accounts import remove_account
from facility.credentials import CredentialStore, credentials_path
from facility.event_archive import archive_homes, home_of
from facility.events import Event, EventStore, events_path, shown
from facility.runtime import Runtime

KEEP_EVERY_S = 300  # how often `af event keep` looks for events whose grace period has passed


@dataclass(frozen=True)
class Archived:
    disabled: list[str]  # participants whose login was removed
    path: Path
    homes: list[str]  # participants whose home is in the archive (and was removed, unless kept)


def archive_event(state: Path, runtime: Runtime, ev: Event, keep_homes: bool = False) -> Archived:
    """Disable the logins of `ev`'s participants, archive their homes, remove them unless kept.
    The caller has checked that the event has ended and no server of it runs."""
    accounts = facility.load(runtime.facility_file).auth.unix_accounts
    logins = CredentialStore(credentials_path(state))
    disabled = [p for p in ev.participants if logins.remove(p)]
    path, homes = archive_homes(state, ev, accounts)
    if not keep_homes:
        for participant in homes:
            if accounts.per_user:
                remove_account(participant, accounts)
            else:
                shutil.rmtree(home_of(participant, accounts, state) or "", ignore_errors=True)
    EventStore(events_path(state)).mark_archived(ev.name)
    return Archived(disabled, path, homes)


def _said(ev: Event, done: Archived, kept: bool) -> str:
    size = done.path.stat().st_size / 2**20
    removed = "kept" if kept else "removed"
    return (
        f"Event {ev.name}: {len(done.disabled)} logins disabled; {len(done.homes)} homes archived into "
        f"{done.path} ({size:.1f} MiB), for its instructors on the event's hub page; homes {removed}."
    )


@event.command("archive")
@click.argument("name")
@click.option("--keep-homes", is_flag=True, help="Archive the homes but leave them and the accounts in place.")
@click.pass_obj
def archive(state: StateDir, name: str, keep_homes: bool) -> None:
    """After NAME has ended: disable its participants' logins, archive their homes into one file its
    instructors download from the event's hub page, then remove the homes (and per-user accounts)."""
    runtime = runtime_of(state)
    ev = event_named(state, name)
    if dt.datetime.now(dt.UTC) < ev.closes:
        fail(f"{ev.name} has not ended (it closes at {shown(ev.closes)}); `af event end {ev.name}` ends it now", 2)
    still = running_participants(Hub(runtime), ev)
    if still:
        fail(f"servers of {ev.name} still run ({', '.join(still)}); `af event end {ev.name}` stops them", 2)
    click.echo(_said(ev, archive_event(state.root, runtime, ev, keep_homes), keep_homes))


@event.command("keep")
@click.option("--every", type=click.IntRange(1, 86400), default=KEEP_EVERY_S, show_default=True, help="Seconds.")
@click.option("--once", is_flag=True, help="Look once and return (the supervised process looks for ever).")
@click.pass_obj
def keep(state: StateDir, every: int, once: bool) -> None:
    """Archive the homes of every event created with --archive-after-days once its grace period after
    the close has passed; participants' servers still running are stopped first (as `af event end`)."""
    runtime = runtime_of(state)
    while True:
        for ev in EventStore(events_path(state.root)).all():
            if not ev.archive_due():
                continue
            hub = Hub(runtime)
            for participant in running_participants(hub, ev):
                hub("DELETE", f"/users/{quote(participant)}/server")
            if running_participants(hub, ev):
                click.echo(f"Event {ev.name}: servers still stopping; archiving at the next look.")
                continue
            click.echo(_said(ev, archive_event(state.root, runtime, ev), kept=False), nl=True)
        if once:
            return
        time.sleep(every)
