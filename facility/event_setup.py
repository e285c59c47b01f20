"""Setting up a new event on a running facility, for `af event create` and the hub's events page:
refuse names that are taken, publish local materials, store the event, issue the participants'
passwords, and make them hub users in the event's group (through the hub's REST API with the
`af-events` service token, the same calls from the command line and from the hub's own page).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import requests

from facility import event_materials
from facility.credentials import CredentialStore, credentials_path, generate_password
from facility.events import Event, EventError, EventStore, events_path
from facility.examples import ExamplesError

HUB_TIMEOUT_S = 30


class MaterialsError(EventError):
    """The event's local materials cannot be published (a bad path, not the facility's state)."""


class EventsHub:
    """The hub's REST API with a token; a hub that does not answer or refuses is an EventError in words."""

    def __init__(self, api: str, token: str):
        self.api = api
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    def __call__(self, method: str, path: str, **kwargs: object) -> requests.Response:
        try:
            return self.http.request(method, f"{self.api}{path}", timeout=HUB_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException:
            raise EventError(f"the hub at {self.api} does not answer; is the facility up (`af status`)?") from None

    def checked(self, method: str, path: str, **kwargs: object) -> requests.Response:
        reply = self(method, path, **kwargs)
        if reply.status_code >= 400:
            raise EventError(f"the hub refused {method} {path}: {reply.status_code} {reply.text[:200]}")
        return reply


def refuse_taken(state: Path, hub: EventsHub, event: Event) -> None:
    """Participants may not take over an existing login or hub user; the event's group must be new."""
    logins = CredentialStore(credentials_path(state))
    for name in event.participants:
        if logins.has(name):
            raise EventError(f"{name} already has a login on this facility; choose another participant name")
        if hub("GET", f"/users/{quote(name)}").status_code != 404:
            raise EventError(f"{name} is already a user of the hub; choose another participant name")
    if hub("GET", f"/groups/{quote(event.group)}").status_code != 404:
        raise EventError(f"the hub already has a group {event.group}; choose another event name")


def issue_passwords(state: Path, names: list[str]) -> list[tuple[str, str]]:
    """A new generated password for each name (replacing an earlier one); (name, password)."""
    logins = CredentialStore(credentials_path(state))
    issued = []
    for name in names:
        password = generate_password()
        logins.set(name, password)
        issued.append((name, password))
    return issued


def set_up_event(state: Path, hub_api: str, token: str, event: Event) -> list[tuple[str, str]]:
    """Make `event` (from facility.events.new_event) real on the facility whose state folder is
    `state` and whose hub's REST API is `hub_api`; the participants' (name, password). EventError
    in words, before anything is made, when a name is taken or the materials cannot be published."""
    hub = EventsHub(hub_api, token)
    refuse_taken(state, hub, event)
    if event.materials and not event_materials.is_remote(event.materials):
        try:
            event_materials.publish(state, event.name, Path(event.materials))
        except ExamplesError as exc:
            raise MaterialsError(str(exc)) from None
    EventStore(events_path(state)).add(event)
    issued = issue_passwords(state, list(event.participants))
    hub.checked("POST", "/users", json={"usernames": list(event.participants)})
    hub.checked("POST", f"/groups/{quote(event.group)}", json={"users": list(event.participants)})
    return issued
