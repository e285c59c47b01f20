"""The hub page /hub/new-event: an event (workshop) created from the browser by an admin or a
member of facility.yaml's auth.event_organisers groups, as `af event create` does on the host.

The form asks what the command asks, except local materials (a folder on the host is for the
command; the page takes a git URL). Every value goes through facility.events.new_event and
facility.event_setup.set_up_event, the command's own checks and steps, so a refused value is
refused in the same words, and the form comes back with what was typed. On success the answer is
the handout itself: the participants' names and passwords as a printable sheet, shown this once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

import facility
from facility import event_materials
from facility.event_handout import handout_sheet
from facility.event_setup import set_up_event
from facility.events import EventError, new_event
from facility.hub_services import EVENTS_SERVICE, hub_api_url, service_token
from facility.model import Facility
from facility.runtime import Runtime

ROUTE = r"/new-event"
NOT_AN_ORGANISER = "Creating events is for the facility's admins and its event organisers (auth.event_organisers)."
FIELDS = ("name", "start", "end", "participants", "image", "max_cores", "max_memory_gb", "materials", "branch")
FIELDS += ("code", "instructors", "archive_after_days")


def may_organise(user: Any, fac: Facility) -> bool:
    """Whether the hub user may create events: an admin, or a member of an organisers' group."""
    return bool(user.admin) or any(group.name in fac.auth.event_organisers for group in user.groups)


def participants_of(text: str) -> int | list[str]:
    """The form's participants: a number, or names separated by commas or spaces."""
    items = text.replace(",", " ").split()
    return int(items[0]) if len(items) == 1 and items[0].isdigit() else items


def allowance_of(form: dict[str, str], backends: list[str]) -> dict[str, Any]:
    """The event's allowance from the form: chosen backends and image, ceilings that were filled in."""
    raw: dict[str, Any] = {}
    if backends:
        raw["backends"] = backends
    if form.get("image"):
        raw["images"] = [form["image"]]
    ceilings = {}
    for key in ("cores", "memory_gb"):
        value = form.get(f"max_{key}", "").strip()
        if value:
            if not value.isdigit():
                raise EventError(f"max {key.replace('_', ' ')}: {value[:20]!r} is not a whole number")
            ceilings[key] = int(value)
    if ceilings:
        raw["max"] = ceilings
    return raw


class NewEventPage(BaseHandler):
    def initialize(self, facility_file: str, state_dir: str, hub_api: str, token: str, public_url: str) -> None:
        # Names of our own: BaseHandler has a public_url (the request's) and more.
        self.facility_file, self.state_dir = facility_file, Path(state_dir)
        self.events_api, self.events_token, self.facility_url = hub_api, token, public_url

    async def _facility(self) -> Facility:
        fac = await asyncio.to_thread(facility.load, self.facility_file)
        if fac.auth.type != "local":
            raise web.HTTPError(409, "Events make their own logins: they need auth.type local in facility.yaml.")
        if not may_organise(self.current_user, fac):
            raise web.HTTPError(403, NOT_AN_ORGANISER, reason="Forbidden")
        return fac

    async def _form(self, fac: Facility, form: dict[str, str], backends: list[str], problem: str = "") -> None:
        self.finish(
            await self.render_template("new_event.html", fac=fac, form=form, chosen_backends=backends, problem=problem)
        )

    @web.authenticated
    async def get(self) -> None:
        fac = await self._facility()
        await self._form(fac, {}, [])

    @web.authenticated
    async def post(self) -> None:
        fac = await self._facility()
        form = {key: self.get_body_argument(key, "").strip() for key in FIELDS}
        backends = self.get_body_arguments("backends")
        try:
            if form["materials"] and not event_materials.is_remote(form["materials"]):
                raise EventError(
                    "materials: give a git URL here; a folder on the facility's host is for `af event create`"
                )
            instructors = tuple(form["instructors"].replace(",", " ").split())
            grace = form["archive_after_days"]
            try:
                archive_after_days = float(grace) if grace else None
            except ValueError:
                raise EventError(f"archive after: {grace[:20]!r} is not a number of days") from None
            event = new_event(
                fac, form["name"], form["start"], form["end"], participants_of(form["participants"]),
                allowance_of(form, backends), form["materials"], form["branch"], form["code"], instructors,
                archive_after_days,
            )  # fmt: skip
            logins = await asyncio.to_thread(set_up_event, self.state_dir, self.events_api, self.events_token, event)
        except (EventError, facility.FacilityError, ValueError) as exc:
            self.set_status(400)
            await self._form(fac, form, backends, problem=str(exc))
            return
        self.log.info("%s created the event %s (%d participants)", self.current_user.name, event.name, len(logins))
        page = f"{self.facility_url.rstrip('/')}/hub/events/{event.name}"
        notice = (
            f"The event {event.name} is created. This sheet is the only copy of its participants' passwords: "
            f"print it now (this note is not printed) or save the page. Its instructors' page: {page}"
        )
        self.finish(handout_sheet(event, self.facility_url, logins, notice=notice))


def configure(c: Any, runtime: Runtime) -> None:
    """Serve /hub/new-event."""
    settings = {
        "facility_file": str(runtime.facility_file),
        "state_dir": str(runtime.state_path),
        "hub_api": hub_api_url(runtime),
        "token": service_token(runtime, EVENTS_SERVICE),
        "public_url": runtime.public_url,
    }
    c.JupyterHub.extra_handlers.append((ROUTE, NewEventPage, settings))  # other pages are there too: add
