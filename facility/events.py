"""Events (workshops, training sessions): who takes part, when, with what, and where the materials are.

`af event create` writes an event into ``events.json`` (0600) in the state folder; the hub's login
(hub_config/auth.py) and FacilitySpawner read it at each login and spawn, so an event's window
and allowance count from the moment it is written, and `af event end` closes it at once.
An event's allowance has the shape and meaning of one of facility.yaml's ``auth.allowances``
(without ``groups``: it is for the event's participants) and narrows what they may use further.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema

from facility.credentials import check_password, hash_password
from facility.loader import schema
from facility.model import Allowance, Facility
from facility.private_file import changing_json, read_json_object
from facility.usernames import UsernameError, checked_username

FILE_NAME = "events.json"
# Event names become a hub group (event-<name>), participant names and a folder in each home.
EVENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,23}$"
GROUP_PREFIX = "event-"
MAX_PARTICIPANTS = 500
MAX_ARCHIVE_DAYS = 366  # the longest grace before an event's homes are archived
# Servers may be started this long before an event's start (pre-warming, `af event prewarm`), so
# that a participant's first login lands in a running server; participants log in from the start.
PREWARM_LEAD = dt.timedelta(minutes=30)
_TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


class EventError(ValueError):
    """An event that cannot be made or used as asked; the message says which value and why."""


def events_path(state_dir: Path) -> Path:
    """Where a facility keeps its events."""
    return Path(state_dir) / FILE_NAME


def checked_event_name(name: str) -> str:
    if not re.fullmatch(EVENT_NAME_PATTERN, name):
        raise EventError(
            f"{name[:40]!r} cannot be an event name: use 1-24 lower-case letters, digits and -, "
            "starting with a letter or digit"
        )
    return name


def utc(value: str | dt.datetime) -> dt.datetime:
    """A time as an aware UTC datetime; an ISO text without an offset is read as UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"{value[:40]!r} is not a time; write it like 2026-12-07T09:00 (UTC)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def shown(when: dt.datetime) -> str:
    return when.strftime(_TIME_FORMAT)


def participant_names(event: str, participants: int | list[str]) -> list[str]:
    """The participants' hub names: given names (checked, as the hub stores them) or <event>-01.. for a count."""
    if isinstance(participants, int):
        if not 1 <= participants <= MAX_PARTICIPANTS:
            raise EventError(f"participants: {participants} is out of range; choose between 1 and {MAX_PARTICIPANTS}")
        width = max(2, len(str(participants)))
        participants = [f"{event}-{i:0{width}d}" for i in range(1, participants + 1)]
    names = []
    for raw in participants:
        try:
            names.append(checked_username(raw))
        except UsernameError as exc:
            raise EventError(f"participant {exc}") from None
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EventError(f"participants: {', '.join(twice)} listed more than once")
    if not names:
        raise EventError("participants: give a number or at least one name")
    return names


def checked_allowance(fac: Facility, raw: dict[str, Any]) -> dict[str, Any]:
    """An event's allowance as written (auth.allowances' schema without groups), its names checked
    against the facility."""
    definition = {"$defs": schema()["$defs"], "$ref": "#/$defs/allowance"}
    try:
        jsonschema.validate(raw, definition)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise EventError(f"allowance{'.' + where if where else ''}: {exc.message}") from None
    if "groups" in raw:
        raise EventError("allowance.groups: an event's allowance is for its participants; leave groups out")
    known = {"backends": [b.name for b in fac.backends], "images": [i.name for i in fac.images]}
    for key, names in known.items():
        for name in raw.get(key, []):
            if name not in names:
                raise EventError(f"allowance.{key}: {name!r} is not one of the {key}; known {key}: {', '.join(names)}")
    return raw


@dataclass(frozen=True)
class Event:
    name: str
    start: dt.datetime
    end: dt.datetime
    participants: tuple[str, ...]
    allowance_raw: dict[str, Any] = field(default_factory=dict)
    materials: str = ""  # a git URL or a local path (published into the state folder), as given
    branch: str = ""  # of a git URL's materials; empty: the repository's default
    code_hash: str = ""  # the shared event code's scrypt hash (facility.credentials), if any
    ended: dt.datetime | None = None  # when `af event end` closed it
    instructors: tuple[str, ...] = ()  # hub users who see the participants' usage (/hub/usage)
    archive_after_days: float | None = None  # the homes archived this long after the close; None: by hand
    archived: dt.datetime | None = None  # when `af event archive` (or its keeper) archived the homes

    @property
    def group(self) -> str:
        """The JupyterHub group of the participants."""
        return GROUP_PREFIX + self.name

    @property
    def allowance(self) -> Allowance:
        raw = self.allowance_raw

        def names(key: str) -> tuple[str, ...] | None:
            return tuple(raw[key]) if key in raw else None

        return Allowance(None, names("backends"), names("images"), names("gpu_types"), dict(raw.get("max", {})))

    @property
    def closes(self) -> dt.datetime:
        return min(self.end, self.ended) if self.ended else self.end

    def refusal(self, now: dt.datetime | None = None) -> str | None:
        """Why a participant may not log in or start a server at `now` (default: now), or None."""
        now = now or dt.datetime.now(dt.UTC)
        if now < self.start:
            return f"The event {self.name!r} starts at {shown(self.start)}; you can log in from then."
        if now >= self.closes:
            return f"The event {self.name!r} ended at {shown(self.closes)}; its accounts are closed."
        return None

    def spawn_refusal(self, now: dt.datetime | None = None) -> str | None:
        """Why no server may be started for a participant at `now`, or None: servers may start from
        PREWARM_LEAD before the start (pre-warming) until the end."""
        now = now or dt.datetime.now(dt.UTC)
        if now < self.start - PREWARM_LEAD:
            return (
                f"The event {self.name!r} starts at {shown(self.start)}; its servers can be started "
                f"from {shown(self.start - PREWARM_LEAD)}."
            )
        return self.refusal(now) if now >= self.start else None

    def prewarm_refusal(self, idle_minutes: int, now: dt.datetime | None = None) -> str | None:
        """Why the participants' servers should not be pre-warmed at `now`, or None. `idle_minutes`
        is the participants' idle timeout (0: never culled): a server started longer than that
        before the start would be stopped as idle before anyone logs in."""
        now = now or dt.datetime.now(dt.UTC)
        refusal = self.spawn_refusal(now)
        if refusal:
            return refusal
        if idle_minutes and now + dt.timedelta(minutes=idle_minutes) < self.start:
            return (
                f"the participants' servers are stopped after {idle_minutes} idle minutes (hub.idle_cull), "
                f"so servers started now would be stopped before the start at {shown(self.start)}; "
                f"pre-warm from {shown(self.start - dt.timedelta(minutes=idle_minutes))}"
            )
        return None

    def archive_due(self, now: dt.datetime | None = None) -> bool:
        """Whether the keeper should archive the homes now: archive_after_days past the close, not yet done."""
        if self.archive_after_days is None or self.archived is not None:
            return False
        return (now or dt.datetime.now(dt.UTC)) >= self.closes + dt.timedelta(days=self.archive_after_days)

    def code_matches(self, code: str) -> bool:
        return bool(self.code_hash) and check_password(code, self.code_hash)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "participants": list(self.participants),
            "allowance": self.allowance_raw,
            "materials": self.materials,
            "branch": self.branch,
            "code_hash": self.code_hash,
            "ended": self.ended.isoformat() if self.ended else None,
            "instructors": list(self.instructors),
            "archive_after_days": self.archive_after_days,
            "archived": self.archived.isoformat() if self.archived else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(
            name=raw["name"],
            start=utc(raw["start"]),
            end=utc(raw["end"]),
            participants=tuple(raw["participants"]),
            allowance_raw=raw.get("allowance", {}),
            materials=raw.get("materials", ""),
            branch=raw.get("branch", ""),
            code_hash=raw.get("code_hash", ""),
            ended=utc(raw["ended"]) if raw.get("ended") else None,
            instructors=tuple(raw.get("instructors", ())),
            archive_after_days=raw.get("archive_after_days"),
            archived=utc(raw["archived"]) if raw.get("archived") else None,
        )


def new_event(
    fac: Facility,
    name: str,
    start: str | dt.datetime,
    end: str | dt.datetime,
    participants: int | list[str],
    allowance: dict[str, Any] | None = None,
    materials: str = "",
    branch: str = "",
    code: str = "",
    instructors: tuple[str, ...] = (),
    archive_after_days: float | None = None,
) -> Event:
    """An event from what an instructor gives, every value checked; not stored yet."""
    name = checked_event_name(name)
    start_at, end_at = utc(start), utc(end)
    if end_at <= start_at:
        raise EventError(f"end: {shown(end_at)} is not after the start, {shown(start_at)}")
    if code and len(code) < 8:
        raise EventError("code: use at least 8 characters, so that it cannot be guessed during the event")
    names = participant_names(name, participants)
    try:
        teachers = tuple(checked_username(i) for i in instructors)
    except UsernameError as exc:
        raise EventError(f"instructor {exc}") from None
    if archive_after_days is not None and not 0 <= archive_after_days <= MAX_ARCHIVE_DAYS:
        raise EventError(f"archive after: {archive_after_days:g} days is out of range; choose 0 to {MAX_ARCHIVE_DAYS}")
    both = sorted(set(teachers) & set(names))
    if both:
        raise EventError(f"{both[0]} cannot be both an instructor and a participant of the event")
    return Event(
        name=name,
        start=start_at,
        end=end_at,
        participants=tuple(names),
        allowance_raw=checked_allowance(fac, allowance or {}),
        materials=materials,
        branch=branch,
        code_hash=hash_password(code) if code else "",
        instructors=teachers,
        archive_after_days=archive_after_days,
    )


class EventStore:
    """The facility's events in one JSON file (0600), changed under a lock file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, Any]]:
        return read_json_object(self.path)

    def _changing(self) -> contextlib.AbstractContextManager[dict[str, dict[str, Any]]]:
        return changing_json(self.path)

    def all(self) -> list[Event]:
        return [Event.from_json(raw) for _, raw in sorted(self._read().items())]

    def get(self, name: str) -> Event | None:
        raw = self._read().get(name)
        return Event.from_json(raw) if raw else None

    def taught_by(self, username: str) -> list[Event]:
        """The events `username` is an instructor of."""
        return [e for e in self.all() if username in e.instructors]

    def event_of(self, username: str) -> Event | None:
        """The event `username` takes part in, if any (a name is in one event at most)."""
        return next((e for e in self.all() if username in e.participants), None)

    def add(self, event: Event) -> None:
        """Store a new event; EventError if the name or one of its participants is taken by another."""
        with self._changing() as events:
            if event.name in events:
                raise EventError(f"an event named {event.name!r} exists already; choose another name")
            taken = {p: name for name, raw in events.items() for p in raw["participants"]}
            clash = [p for p in event.participants if p in taken]
            if clash:
                raise EventError(f"{clash[0]} already takes part in the event {taken[clash[0]]!r}")
            events[event.name] = event.as_json()

    def with_code(self, code: str) -> Event | None:
        """The event whose shared code `code` is, open or not (one scrypt check per event with a code)."""
        return next((e for e in self.all() if e.code_matches(code)), None) if code else None

    def join(self, name: str, participant: str, now: dt.datetime | None = None) -> Event:
        """Add `participant`, a name chosen at a login with the event's code, to event `name`; the
        event as it is now. EventError, in words, when the event is not open or full, or the name is
        not a valid username or takes part in an event already."""
        participant = participant_names(name, [participant])[0]
        with self._changing() as events:
            if name not in events:
                raise EventError(f"no event named {name!r}")
            event = Event.from_json(events[name])
            refusal = event.refusal(now)
            if refusal:
                raise EventError(refusal)
            if any(participant in raw["participants"] for raw in events.values()):
                raise EventError(f"The name {participant!r} is taken; choose another name.")
            if len(event.participants) >= MAX_PARTICIPANTS:
                raise EventError(f"The event {name!r} is full ({MAX_PARTICIPANTS} participants).")
            event = replace(event, participants=(*event.participants, participant))
            events[name] = event.as_json()
            return event

    def mark_archived(self, name: str, now: dt.datetime | None = None) -> None:
        """Record that the event's homes are archived (the keeper does not archive it again)."""
        with self._changing() as events:
            if name in events:
                events[name]["archived"] = (now or dt.datetime.now(dt.UTC)).isoformat()

    def end(self, name: str, now: dt.datetime | None = None) -> Event:
        """Close an event now (logins and spawns are refused from then on); the closed event."""
        with self._changing() as events:
            if name not in events:
                raise EventError(f"no event named {name!r}")
            event = Event.from_json(events[name])
            if event.ended is None:
                event = replace(event, ended=now or dt.datetime.now(dt.UTC))
                events[name] = event.as_json()
            return event
