"""`af event`: workshops and training sessions on a running facility (facility.events).

`create` makes the participants as hub users with their own generated passwords (as `af user add`
does), a JupyterHub group for them, and the handout (CSV and a printable HTML sheet); `end` stops
their servers (their Dask clusters stop with them) and closes their logins; `prewarm` starts their
servers before they arrive. The hub is reached through its REST API with the `af-events` service
token (facility.hub_services).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import click
import requests

import facility
from af.runtime import StateDir
from facility import event_materials
from facility.event_handout import write_handout
from facility.event_setup import EventsHub, MaterialsError, issue_passwords, set_up_event
from facility.events import Event, EventError, EventStore, events_path, new_event, shown
from facility.examples import ExamplesError
from facility.hub_listing import active_users
from facility.hub_services import EVENTS_SERVICE, hub_api_url, service_token
from facility.runtime import Runtime


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def runtime_of(state: StateDir) -> Runtime:
    runtime = state.read_runtime()
    if runtime is None:
        fail(f"no facility has been started in {state.root}; run `af up` first")
    return runtime


class Hub(EventsHub):
    """The hub's REST API with `af event`'s service token; a hub that does not answer or refuses
    ends the command with its words."""

    def __init__(self, runtime: Runtime):
        self.token = service_token(runtime, EVENTS_SERVICE)
        super().__init__(hub_api_url(runtime), self.token)

    def __call__(self, method: str, path: str, **kwargs: object) -> requests.Response:
        try:
            return super().__call__(method, path, **kwargs)
        except EventError as exc:
            fail(str(exc))

    def checked(self, method: str, path: str, **kwargs: object) -> requests.Response:
        try:
            return super().checked(method, path, **kwargs)
        except EventError as exc:
            fail(str(exc))


def _store(state: StateDir) -> EventStore:
    return EventStore(events_path(state.root))


def event_named(state: StateDir, name: str) -> Event:
    event = _store(state).get(name)
    if event is None:
        fail(f"no event named {name!r}; `af event list` shows them")
    return event


def _names(participants: str) -> int | list[str]:
    """--participants: a number, or names separated by commas or spaces, or @FILE with one name a line."""
    text = Path(participants[1:]).read_text() if participants.startswith("@") else participants
    items = text.replace(",", " ").split()
    return int(items[0]) if len(items) == 1 and items[0].isdigit() else items


def _allowance(backends: tuple[str, ...], images: tuple[str, ...], maxima: tuple[str, ...]) -> dict[str, object]:
    raw: dict[str, object] = {}
    if backends:
        raw["backends"] = list(backends)
    if images:
        raw["images"] = list(images)
    ceilings = {}
    for item in maxima:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            fail(f"--max {item!r}: write KEY=NUMBER, for example cores=1", 2)
        ceilings[key.strip()] = int(value)
    if ceilings:
        raw["max"] = ceilings
    return raw


@click.group("event")
def event() -> None:
    """Workshops and training sessions: participants with their own logins, a window, an allowance, materials."""


@event.command("create")
@click.argument("name")
@click.option("--start", required=True, help="When participants may start logging in, e.g. 2026-12-07T09:00 (UTC).")
@click.option("--end", required=True, help="When logins and servers end, e.g. 2026-12-07T17:00 (UTC).")
@click.option(
    "--participants",
    required=True,
    help="A number (names NAME-01, NAME-02, ...), names separated by commas, or @FILE with one name a line.",
)
@click.option("--backend", "backends", multiple=True, help="A backend participants may use (repeat; default: all).")
@click.option("--image", "images", multiple=True, help="An image participants may use (repeat; default: all).")
@click.option("--max", "maxima", multiple=True, help="A ceiling as in auth.allowances' max, e.g. cores=1 (repeat).")
@click.option("--materials", default="", help="A git URL the servers can reach, or a local folder or git repository.")
@click.option("--branch", default="", help="Branch of a git URL's materials (default: the repository's own).")
@click.option("--code", default="", help="A shared event code (stored as a hash).")
@click.option(
    "--instructor",
    "instructors",
    multiple=True,
    help="A hub user who sees the participants' usage on the hub's page /hub/usage (repeat).",
)
@click.option(
    "--archive-after-days",
    type=float,
    default=None,
    help="Archive the participants' homes (`af event archive`) this many days after the end, by itself.",
)
@click.option(
    "--handout",
    "handout_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the handout (default: ./NAME-handout).",
)
@click.pass_obj
def create(
    state: StateDir,
    name: str,
    start: str,
    end: str,
    participants: str,
    backends: tuple[str, ...],
    images: tuple[str, ...],
    maxima: tuple[str, ...],
    materials: str,
    branch: str,
    code: str,
    instructors: tuple[str, ...],
    archive_after_days: float | None,
    handout_dir: Path | None,
) -> None:
    """Create event NAME: its participants' logins and hub group, and the handout with their passwords."""
    runtime = runtime_of(state)
    if materials and not event_materials.is_remote(materials):
        materials = str(Path(materials).expanduser().resolve())  # the hub's instructor page publishes it again
    try:
        fac = facility.load(runtime.facility_file)
        if fac.auth.type != "local":
            fail("events make their own logins: they need auth.type local (OIDC sites give accounts themselves)", 2)
        new = new_event(fac, name, start, end, _names(participants), _allowance(backends, images, maxima),
                        materials, branch, code, instructors, archive_after_days)  # fmt: skip
    except (EventError, facility.FacilityError, OSError, ValueError) as exc:
        fail(str(exc), 2)
    try:
        logins = set_up_event(state.root, hub_api_url(runtime), service_token(runtime, EVENTS_SERVICE), new)
    except MaterialsError as exc:
        fail(str(exc), 2)
    except EventError as exc:
        fail(str(exc))
    csv_file, html_file = write_handout(handout_dir or Path(f"{new.name}-handout"), new, runtime.public_url, logins)
    click.echo(f"Event {new.name}: {len(new.participants)} participants, {shown(new.start)} to {shown(new.end)}")
    click.echo(f"Handout (the only copy of the passwords): {csv_file} and {html_file}")
    if new.instructors:
        click.echo(f"Instructors' page: {runtime.public_url.rstrip('/')}/hub/events/{new.name}")


@event.command("publish")
@click.argument("name")
@click.pass_obj
def publish(state: StateDir, name: str) -> None:
    """Publish NAME's local materials again: participants get the folder's current files the next time
    they open their server (nbgitpuller merges them and keeps their edits)."""
    ev = event_named(state, name)
    if not ev.materials or event_materials.is_remote(ev.materials):
        fail(f"{ev.name}'s materials come from {ev.materials or 'nowhere'}; there is nothing to publish here", 2)
    try:
        event_materials.publish(state.root, ev.name, Path(ev.materials))
    except ExamplesError as exc:
        fail(str(exc), 2)
    click.echo(f"Published {ev.materials} again for {ev.name}: participants get it when they next open their server.")


@event.command("list")
@click.pass_obj
def list_events(state: StateDir) -> None:
    """Every event: name, window, participants, open or not."""
    for ev in _store(state).all():
        status = ev.refusal() or "open"
        click.echo(f"{ev.name}\t{shown(ev.start)}\t{shown(ev.closes)}\t{len(ev.participants)} participants\t{status}")


@event.command("show")
@click.argument("name")
@click.pass_obj
def show(state: StateDir, name: str) -> None:
    """One event: window, allowance, materials, participants."""
    ev = event_named(state, name)
    click.echo(f"event:        {ev.name} (hub group {ev.group})")
    click.echo(f"window:       {shown(ev.start)} to {shown(ev.end)}")
    click.echo(f"now:          {ev.refusal() or 'open'}")
    click.echo(f"allowance:    {ev.allowance_raw or 'everything the facility allows'}")
    click.echo(f"materials:    {ev.materials or 'none'}")
    click.echo(f"event code:   {'set' if ev.code_hash else 'none'}")
    if ev.archived:
        click.echo(f"homes:        archived {shown(ev.archived)}")
    elif ev.archive_after_days is not None:
        click.echo(f"homes:        archived {ev.archive_after_days:g} days after the end")
    click.echo(f"instructors:  {', '.join(ev.instructors) or 'none'} (see the participants' usage on /hub/usage)")
    click.echo(f"participants: {', '.join(ev.participants)}")


@event.command("handout")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Default: ./NAME-handout.")
@click.pass_obj
def handout(state: StateDir, name: str, out: Path | None) -> None:
    """Give every participant of NAME a new password and write a new handout (the old passwords stop working)."""
    runtime = runtime_of(state)
    ev = event_named(state, name)
    logins = issue_passwords(state.root, list(ev.participants))
    csv_file, html_file = write_handout(out or Path(f"{ev.name}-handout"), ev, runtime.public_url, logins)
    click.echo(f"New passwords for the {len(logins)} participants of {ev.name}: {csv_file} and {html_file}")


@event.command("prewarm")
@click.argument("name")
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Only the first COUNT participants (default: all)."
)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the servers.")
@click.pass_obj
def prewarm(state: StateDir, name: str, count: int | None, timeout: float) -> None:
    """Start the servers of NAME's participants now, with the event's default choices, so that each
    first login lands in a running server. From 30 minutes before the start; again later, it starts
    only the servers that are not running."""
    runtime = runtime_of(state)
    ev = event_named(state, name)
    try:
        idle_minutes = facility.load(runtime.facility_file).hub.idle_cull.minutes_for({ev.group})
    except facility.FacilityError as exc:
        fail(str(exc), 2)
    refusal = ev.prewarm_refusal(idle_minutes)
    if refusal:
        fail(f"not pre-warming {ev.name}: {refusal}", 2)
    hub = Hub(runtime)
    wanted = list(ev.participants[:count])
    already = set(running_participants(hub, ev)) & set(wanted)
    failed: dict[str, str] = {}
    started = time.monotonic()
    for user in wanted:
        if user not in already:
            reply = hub("POST", f"/users/{quote(user)}/server", json={})  # {}: the event's defaults
            if reply.status_code >= 400:
                failed[user] = _message_of(reply)
    waiting = [u for u in wanted if u not in already and u not in failed]
    click.echo(f"Starting {len(waiting)} servers of {ev.name} ({len(already)} already running)")
    deadline = started + timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(1)
        for user in list(waiting):
            server = hub.checked("GET", f"/users/{quote(user)}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                waiting.remove(user)
                ready = len(wanted) - len(waiting) - len(failed)
                click.echo(f"  {ready}/{len(wanted)} ready ({user}, {time.monotonic() - started:.1f} s)")
            elif not server:  # the spawn failed: the hub dropped the server
                waiting.remove(user)
                failed[user] = "the server did not start; the hub's log says why (`af status` shows where it is)"
    for user in waiting:
        failed[user] = f"not ready after {timeout:.0f} s"
    if failed:
        for user, why in sorted(failed.items()):
            click.echo(f"  {user}: {why}", err=True)
        fail(f"{len(failed)} of {len(wanted)} servers of {ev.name} are not running")
    click.echo(
        f"Pre-warmed {ev.name}: {len(wanted)} servers running after {time.monotonic() - started:.1f} s; "
        "a participant who logs in lands in their running server"
    )


def _message_of(reply: requests.Response) -> str:
    """The hub's own words for a refused request (its JSON "message"), not the HTTP code alone."""
    try:
        return str(reply.json().get("message") or reply.reason)
    except ValueError:
        return reply.reason or f"refused ({reply.status_code})"


@event.command("end")
@click.argument("name")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for servers to stop.")
@click.pass_obj
def end(state: StateDir, name: str, timeout: float) -> None:
    """End NAME now: participants can no longer log in or start servers; their servers (and with them
    their Dask clusters) stop; instructors' shares of them are revoked."""
    runtime = runtime_of(state)
    try:
        ev = _store(state).end(name)
    except EventError as exc:
        fail(str(exc))
    hub = Hub(runtime)
    running = running_participants(hub, ev)
    for user in running:
        hub("DELETE", f"/users/{quote(user)}/server")
    for user in ev.participants:  # the instructors' shares of the participants' servers (/hub/events/<name>)
        hub("DELETE", f"/shares/{quote(user)}/")  # 404 for a participant who never had a server: nothing to revoke
    deadline = time.monotonic() + timeout
    while (left := running_participants(hub, ev)) and time.monotonic() < deadline:
        time.sleep(1)
    click.echo(
        f"Event {ev.name} ended at {shown(ev.closes)}: logins closed, {len(running) - len(left)} servers stopped"
    )
    if left:
        fail(f"servers still running after {timeout:.0f} s: {', '.join(left)}")


def running_participants(hub: Hub, ev: Event) -> list[str]:
    """Participants with a server that is running or starting (every page of the hub's listing:
    an event may have more participants than one page holds)."""
    try:
        users = active_users(hub.api, hub.token, timeout=30)
    except requests.RequestException as exc:
        fail(f"the hub at {hub.api} did not list its servers: {exc}")
    return sorted(u["name"] for u in users if u["name"] in ev.participants)
