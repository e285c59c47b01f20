"""The hub pages of an event's instructors: /hub/events (the events they teach),
/hub/events/<name> (its participants' servers, and what an instructor does with them) and, once
`af event archive` ran, /hub/events/<name>/homes.tar.gz (the participants' homes).

An instructor (`af event create --instructor`) or an admin sees each participant's server:
not started, starting, running (with its last activity), stopping, stopped, or failed. They can
open a running server: the page grants the instructor a JupyterHub share of that one server
(`access:servers!server=<participant>/`, what JupyterHub's sharing API grants; no admin token,
nothing else of the participant's) and sends the browser there. They can stop one server or all
of them (the participants' Dask clusters stop with them), and publish the event's local materials
again, which participants get the next time they open their server from the hub (nbgitpuller
merges and keeps their edits). Everyone else is refused in words.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from tornado import web
from tornado.httputil import url_concat

from facility import event_materials
from facility.event_archive import archive_path
from facility.events import Event, EventStore, events_path, shown
from facility.examples import ExamplesError
from facility.runtime import Runtime

NAME = r"([a-z0-9][a-z0-9-]{0,23})"  # facility.events.checked_event_name's names
NOT_YOURS = "This page is for the event's instructors and the facility's admins."
STOP_WAIT_S = 10  # a page that stops 50 servers answers in seconds; the slow ones go on stopping


@dataclass(frozen=True)
class ParticipantServer:
    name: str
    state: str  # not started, starting, running, stopping, stopped, failed
    last_activity: str  # "" when never active
    backend: str

    @property
    def running(self) -> bool:
        return self.state == "running"


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC).strftime("%H:%M UTC")


def _state_of(spawner: Any) -> str:
    if spawner.pending == "spawn":
        return "starting"
    if spawner.pending == "stop":
        return "stopping"
    if spawner.ready:
        return "running"
    started = getattr(spawner, "_spawn_future", None)
    if started is not None and started.done() and started.exception() is not None:
        return "failed"
    # A user's default server exists in the hub from their creation; one never started has no activity.
    return "stopped" if spawner.orm_spawner.last_activity else "not started"


class EventPages(BaseHandler):
    def initialize(self, events_file: str, state_dir: str, organiser_groups: tuple[str, ...] = ()) -> None:
        self.events = EventStore(Path(events_file))
        self.state_dir = Path(state_dir)
        self.organiser_groups = organiser_groups

    def _organises(self) -> bool:
        user = self.current_user
        return bool(user.admin) or any(group.name in self.organiser_groups for group in user.groups)

    def _taught(self) -> list[Event]:
        if self.current_user.admin:
            return self.events.all()
        return self.events.taught_by(self.current_user.name)

    def _event(self, name: str) -> Event:
        event = next((e for e in self._taught() if e.name == name), None)
        if event is None:
            raise web.HTTPError(403 if self.events.get(name) else 404, NOT_YOURS, reason="Forbidden")
        return event

    def _server_of(self, participant: str) -> ParticipantServer:
        user = self.find_user(participant)
        if user is None or "" not in user.orm_spawners:
            return ParticipantServer(participant, "not started", "", "")
        spawner = user.spawners[""]
        backend = str((spawner.user_options or {}).get("backend", ""))
        return ParticipantServer(participant, _state_of(spawner), _when(spawner.orm_spawner.last_activity), backend)

    async def _page(self, event: Event, said: str = "", problem: str = "") -> None:
        servers = [self._server_of(p) for p in event.participants]
        counts = {state: sum(s.state == state for s in servers) for state in ("running", "starting", "failed")}
        self.finish(
            await self.render_template(
                "event.html",
                event=event,
                window=f"{shown(event.start)} to {shown(event.closes)}",
                servers=servers,
                counts=counts,
                local_materials=bool(event.materials) and not event_materials.is_remote(event.materials),
                archive_mib=self._archive_mib(event),
                said=said,
                problem=problem,
            )
        )

    def _archive_mib(self, event: Event) -> float | None:
        """The size of the participants' homes archive (`af event archive`), None before there is one."""
        path = archive_path(self.state_dir, event.name)
        return path.stat().st_size / 2**20 if path.is_file() else None

    @web.authenticated
    async def get(self, name: str | None = None) -> None:
        if name is None:
            taught, organises = self._taught(), self._organises()
            if not taught and not organises:
                raise web.HTTPError(403, "You teach no event on this facility.", reason="Forbidden")
            self.finish(await self.render_template("events.html", events=taught, shown=shown, can_create=organises))
            return
        event = self._event(name)
        await self._page(event, said=self._said(event))

    @web.authenticated
    async def post(self, name: str | None = None) -> None:
        if name is None:
            raise web.HTTPError(405)
        event = self._event(name)
        action, who = self.get_body_argument("action", ""), self.get_body_argument("participant", "")
        if who and who not in event.participants:
            self.set_status(400)
            await self._page(event, problem=f"{who[:64]!r} is not a participant of {event.name}.")
            return
        if action == "open":
            await self._open(event, who)
        elif action == "stop":
            await self._stop([who])
            self._done(event, "stopped", who=who)
        elif action == "stop-all":
            running = [s.name for s in map(self._server_of, event.participants) if s.state in ("running", "starting")]
            await self._stop(running)
            self._done(event, "stopped-all", count=len(running))
        elif action == "publish":
            await self._publish(event)
        else:
            self.set_status(400)
            await self._page(event, problem="That is not something this page does.")

    def _done(self, event: Event, done: str, **details: str | int) -> None:
        """Back to the page, which says what was done: a reload then shows the page, and repeats nothing."""
        self.redirect(url_concat(f"{self.hub.base_url}events/{event.name}", {"done": done, **details}))

    def _said(self, event: Event) -> str:
        """The sentence for the page's ?done= (fixed sentences: a link cannot make the page say anything else)."""
        done, who = self.get_argument("done", ""), self.get_argument("who", "")
        if done == "stopped" and who in event.participants:
            return f"{who}'s server is stopping."
        if done == "stopped-all":
            count = self.get_argument("count", "")
            return f"Stopping {int(count) if count.isdigit() else 'the'} servers of {event.name}."
        if done == "published":
            return f"Published {event.materials} again: participants get it the next time they open their server."
        return ""

    async def _open(self, event: Event, participant: str) -> None:
        user = self.find_user(participant)
        if user is None or self._server_of(participant).state != "running":
            self.set_status(409)
            await self._page(event, problem=f"{participant}'s server is not running; nothing to open.")
            return
        # The same grant JupyterHub's sharing API makes: this one server, for this instructor.
        scopes = [f"access:servers!server={participant}/"]
        orm.Share.grant(self.db, user.orm_spawners[""], self.current_user.orm_user, scopes=scopes)
        self.log.info("%s opens %s's server (event %s)", self.current_user.name, participant, event.name)
        self.redirect(f"{user.url}lab")

    async def _stop(self, participants: list[str]) -> None:
        """Stop the servers all at once; wait STOP_WAIT_S at most (the page then says "stopping")."""
        stops = []
        for participant in participants:
            user = self.find_user(participant)
            if user is not None and user.spawners[""].active:
                self.log.info("%s stops %s's server", self.current_user.name, participant)
                stop = asyncio.ensure_future(self.stop_single_user(user, ""))
                stop.add_done_callback(self._log_failed_stop)
                stops.append(stop)
        if stops:
            await asyncio.wait(stops, timeout=STOP_WAIT_S)  # the rest go on after the answer

    def _log_failed_stop(self, stop: asyncio.Future) -> None:
        if not stop.cancelled() and stop.exception() is not None:
            self.log.error("Stopping a participant's server failed: %s", stop.exception())

    async def _publish(self, event: Event) -> None:
        if not event.materials or event_materials.is_remote(event.materials):
            where = event.materials or "nowhere (the event has none)"
            await self._page(event, problem=f"The materials come from {where}; there is nothing to publish here.")
            return
        try:
            await asyncio.to_thread(event_materials.publish, self.state_dir, event.name, Path(event.materials))
        except ExamplesError as exc:
            self.set_status(500)
            await self._page(event, problem=f"The materials were not published: {exc}")
            return
        self._done(event, "published")


class EventArchive(EventPages):
    """The participants' homes of an archived event, for its instructors and admins only."""

    @web.authenticated
    async def get(self, name: str | None = None) -> None:
        event = self._event(name or "")
        path = archive_path(self.state_dir, event.name)
        if not path.is_file():
            raise web.HTTPError(
                404, f"The homes of {event.name} are not archived (yet): `af event archive {event.name}`."
            )
        self.log.info("%s downloads the homes of event %s", self.current_user.name, event.name)
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{event.name}-homes.tar.gz"')
        with path.open("rb") as archive:
            while chunk := await asyncio.to_thread(archive.read, 1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


def configure(c: Any, runtime: Runtime, organiser_groups: tuple[str, ...] = ()) -> None:
    """Serve /hub/events and /hub/events/<name>; the navigation bar links them for instructors and
    organisers (members of `organiser_groups`), who also get the link to /hub/new-event."""
    settings = {
        "events_file": str(events_path(runtime.state_path)),
        "state_dir": str(runtime.state_path),
        "organiser_groups": organiser_groups,
    }
    events = EventStore(events_path(runtime.state_path))

    def teaches(user: Any) -> bool:  # JupyterHub calls template_vars' callables with the page's user
        return user is not None and (organises(user) or bool(events.taught_by(user.name)))

    def organises(user: Any) -> bool:
        return user is not None and any(group.name in organiser_groups for group in user.groups)

    c.JupyterHub.template_vars.update({"af_teaches": teaches, "af_organises": organises})
    # extra_handlers holds other pages too: add, never assign.
    c.JupyterHub.extra_handlers.extend(
        [
            (r"/events", EventPages, settings),
            (rf"/events/{NAME}", EventPages, settings),
            (rf"/events/{NAME}/homes\.tar\.gz", EventArchive, settings),
        ]
    )
