"""`af event archive NAME`: after an event's end, its participants' logins disabled and their homes
archived into one file for the instructors (facility.event_archive), then removed."""

from __future__ import annotations

import shutil

import click

import facility
from af.events import Hub, event, event_named, fail, running_participants, runtime_of
from af.runtime import StateDir
from facility.accounts import AccountError, remove_account
from facility.credentials import CredentialStore, credentials_path
from facility.event_archive import archive_homes, home_of
from facility.events import shown


@event.command("archive")
@click.argument("name")
@click.option("--keep-homes", is_flag=True, help="Archive the homes but leave them and the accounts in place.")
@click.pass_obj
def archive(state: StateDir, name: str, keep_homes: bool) -> None:
    """After NAME has ended: disable its participants' logins, archive their homes into one file its
    instructors download from the event's hub page, then remove the homes (and per-user accounts)."""
    runtime = runtime_of(state)
    ev = event_named(state, name)
    if ev.refusal() is None or "ended" not in ev.refusal():
        fail(f"{ev.name} has not ended (it closes at {shown(ev.closes)}); `af event end {ev.name}` ends it now", 2)
    still = running_participants(Hub(runtime), ev)
    if still:
        fail(f"servers of {ev.name} still run ({', '.join(still)}); `af event end {ev.name}` stops them", 2)
    accounts = facility.load(runtime.facility_file).auth.unix_accounts
    logins = CredentialStore(credentials_path(state.root))
    disabled = [p for p in ev.participants if logins.remove(p)]
    path, archived = archive_homes(state.root, ev, accounts)
    size = path.stat().st_size / 2**20
    click.echo(
        f"Event {ev.name}: {len(disabled)} logins disabled; {len(archived)} homes archived into {path} ({size:.1f} MiB)"
    )
    if keep_homes:
        return
    try:
        for participant in archived:
            if accounts.per_user:
                remove_account(participant, accounts)
            else:
                shutil.rmtree(home_of(participant, accounts, state.root) or "", ignore_errors=True)
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"Removed the {len(archived)} homes{' and Unix accounts' if accounts.per_user else ''}.")
