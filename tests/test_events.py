"""Events on the ground floor (facility.events, facility.event_materials): names, window, allowance,
the private store, and materials published as a git repository that a real git clones."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest

import facility
from facility import event_materials
from facility.allowances import usable_backends
from facility.events import PREWARM_LEAD, EventError, EventStore, events_path, new_event
from facility.validation import RequestError, validate_spawn

pytestmark = pytest.mark.no_facility

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def fac() -> facility.Facility:
    return facility.load(facility.embedded_default_path())


def _event(fac: facility.Facility, **kwargs):
    args = {"name": "tut", "start": "2026-12-07T09:00", "end": "2026-12-07T17:00", "participants": 3}
    return new_event(fac, **{**args, **kwargs})


def test_participants_from_a_count_or_names(fac) -> None:
    assert _event(fac).participants == ("tut-01", "tut-02", "tut-03")
    assert _event(fac, participants=["Ana", "ben"]).participants == ("ana", "ben")
    with pytest.raises(EventError, match=r"participant 'a;rm -rf ~' cannot be a username: use 1-64 letters"):
        _event(fac, participants=["ok", "a;rm -rf ~"])
    with pytest.raises(EventError, match="participants: ana listed more than once"):
        _event(fac, participants=["ana", "Ana"])
    with pytest.raises(EventError, match="participants: 0 is out of range"):
        _event(fac, participants=0)


def test_instructors_are_hub_users_apart_from_the_participants(fac, tmp_path: Path) -> None:
    """An event's instructors see its participants' usage (/hub/usage, hub_config.usage_page)."""
    event = _event(fac, instructors=("Bob", "carol"))
    assert event.instructors == ("bob", "carol")
    with pytest.raises(EventError, match=r"instructor 'b ob' cannot be a username: use 1-64 letters"):
        _event(fac, instructors=("b ob",))
    with pytest.raises(EventError, match="tut-02 cannot be both an instructor and a participant of the event"):
        _event(fac, instructors=("tut-02",))
    store = EventStore(events_path(tmp_path))
    store.add(event)
    store.add(_event(fac, name="other", participants=["dan"]))
    assert [e.name for e in store.taught_by("bob")] == ["tut"]
    assert store.taught_by("dan") == [] and store.get("other").instructors == ()


def test_names_and_times_are_checked_in_plain_words(fac) -> None:
    with pytest.raises(EventError, match=r"'Tut \$\(id\)' cannot be an event name: use 1-24 lower-case"):
        _event(fac, name="Tut $(id)")
    with pytest.raises(EventError, match="'tomorrow' is not a time; write it like 2026-12-07T09:00"):
        _event(fac, start="tomorrow")
    with pytest.raises(EventError, match="end: 2026-12-07 08:00 UTC is not after the start, 2026-12-07 09:00 UTC"):
        _event(fac, end="2026-12-07T08:00")
    # An offset is converted to UTC.
    assert _event(fac, start="2026-12-07T10:00+01:00").start == NOW


def test_window_says_when(fac) -> None:
    event = _event(fac)
    assert event.refusal(NOW - dt.timedelta(minutes=1)) == (
        "The event 'tut' starts at 2026-12-07 09:00 UTC; you can log in from then."
    )
    assert event.refusal(NOW) is None
    assert event.refusal(NOW + dt.timedelta(hours=8)) == (
        "The event 'tut' ended at 2026-12-07 17:00 UTC; its accounts are closed."
    )


def test_servers_may_start_shortly_before_the_start(fac) -> None:
    event = _event(fac)
    assert event.spawn_refusal(NOW - PREWARM_LEAD) is None
    assert event.spawn_refusal(NOW - PREWARM_LEAD - dt.timedelta(minutes=1)) == (
        "The event 'tut' starts at 2026-12-07 09:00 UTC; its servers can be started from 2026-12-07 08:30 UTC."
    )
    assert event.spawn_refusal(NOW + dt.timedelta(hours=8)) == event.refusal(NOW + dt.timedelta(hours=8))


def test_prewarm_waits_for_the_idle_timeout(fac) -> None:
    event = _event(fac)
    early = NOW - dt.timedelta(minutes=25)
    assert event.prewarm_refusal(0, early) is None  # never culled
    assert event.prewarm_refusal(30, early) is None
    assert event.prewarm_refusal(20, early) == (
        "the participants' servers are stopped after 20 idle minutes (hub.idle_cull), so servers started "
        "now would be stopped before the start at 2026-12-07 09:00 UTC; pre-warm from 2026-12-07 08:40 UTC"
    )
    assert "its servers can be started from" in event.prewarm_refusal(0, NOW - dt.timedelta(hours=1))


def test_allowance_uses_auth_allowances_schema_and_names(fac) -> None:
    with pytest.raises(EventError, match="allowance.backends: 'gpu' is not one of the backends; known backends: local"):
        _event(fac, allowance={"backends": ["gpu"]})
    with pytest.raises(EventError, match="allowance.max: Additional properties are not allowed"):
        _event(fac, allowance={"max": {"cpus": 1}})
    with pytest.raises(EventError, match="allowance.groups: an event's allowance is for its participants"):
        _event(fac, allowance={"groups": ["x"]})


def test_event_allowance_narrows_the_spawn(fac) -> None:
    event = _event(fac, allowance={"max": {"cores": 1, "memory_gb": 2}})
    (local,) = usable_backends(fac, {event.group}, also=event.allowance)
    assert (local.cores.max, local.memory_gb.max) == (1, 2)
    assert validate_spawn(fac, {"cores": "1"}, {event.group}, also=event.allowance).cores == 1
    with pytest.raises(RequestError, match="cores: 2 is out of range; choose between 1 and 1"):
        validate_spawn(fac, {"cores": "2"}, {event.group}, also=event.allowance)
    # Without the event's allowance the same request is fine.
    assert validate_spawn(fac, {"cores": "2"}, {event.group}).cores == 2


def test_store_is_private_and_refuses_clashes(fac, tmp_path: Path) -> None:
    store = EventStore(events_path(tmp_path))
    store.add(_event(fac, code="a-long-code"))
    path = events_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert "a-long-code" not in path.read_text()  # only its hash
    stored = store.get("tut")
    assert stored.code_matches("a-long-code") and not stored.code_matches("wrong-code")
    assert store.event_of("tut-02").name == "tut" and store.event_of("alice") is None
    with pytest.raises(EventError, match="an event named 'tut' exists already"):
        store.add(_event(fac))
    with pytest.raises(EventError, match="tut-01 already takes part in the event 'tut'"):
        store.add(_event(fac, name="other", participants=["tut-01"]))
    ended = store.end("tut", now=NOW + dt.timedelta(hours=1))
    assert store.get("tut").closes == NOW + dt.timedelta(hours=1) == ended.closes
    assert "ended at 2026-12-07 10:00 UTC" in store.get("tut").refusal(NOW + dt.timedelta(hours=2))


def test_local_materials_publish_as_a_clonable_repository(tmp_path: Path) -> None:
    source = tmp_path / "course"
    (source / "part2").mkdir(parents=True)
    (source / "intro.ipynb").write_text("{}")
    (source / "part2" / "data.txt").write_text("42")
    repo = event_materials.publish(tmp_path / "state", "tut", source)
    assert (repo / "info" / "refs").is_file()  # dumb HTTP's index
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)  # noqa: S607
    assert (clone / "intro.ipynb").is_file() and (clone / "part2" / "data.txt").read_text() == "42"
    with pytest.raises(facility.examples.ExamplesError, match="is not a folder"):
        event_materials.publish(tmp_path / "state", "tut", tmp_path / "missing")


def test_pull_urls() -> None:
    local = event_materials.pull_url("tut", "/srv/course")
    assert "repo=af-hub%3A%2F%2Fevents%2Ftut.git" in local and "depth=0" in local
    assert "targetpath=tut" in local and "urlpath=lab%2Ftree%2Ftut" in local
    remote = event_materials.pull_url("tut", "https://example.org/c.git", branch="v1")
    assert "repo=https%3A%2F%2Fexample.org%2Fc.git" in remote and "branch=v1" in remote


def test_a_code_finds_its_event_and_a_new_name_joins_once(fac, tmp_path: Path) -> None:
    store = EventStore(events_path(tmp_path))
    store.add(_event(fac, code="a-long-code"))
    store.add(_event(fac, name="other", participants=["zoe"]))
    assert store.with_code("a-long-code").name == "tut" and store.with_code("wrong-code") is None
    assert store.with_code("") is None
    during = NOW + dt.timedelta(hours=1)
    assert store.join("tut", "Ana", now=during).participants[-1] == "ana"  # as the hub stores names
    assert store.event_of("ana").name == "tut"
    for name, words in (("ana", "The name 'ana' is taken"), ("zoe", "The name 'zoe' is taken"),
                        ("a;b", "cannot be a username")):  # fmt: skip
        with pytest.raises(EventError, match=words):
            store.join("tut", name, now=during)
    with pytest.raises(EventError, match="starts at 2026-12-07 09:00 UTC"):
        store.join("tut", "ben", now=NOW - dt.timedelta(hours=2))
    assert store.event_of("ben") is None  # nothing changed by a refusal


def test_event_organisers_are_groups_of_the_embedded_login_only() -> None:
    import yaml

    raw = yaml.safe_load(facility.embedded_default_path().read_text())
    raw["auth"] = {**raw["auth"], "groups": {"teachers": ["olivia"]}, "event_organisers": ["teachers"]}
    assert facility.loads(yaml.safe_dump(raw)).auth.event_organisers == ("teachers",)
    raw["auth"] = {"type": "oidc", "oidc": {"issuer": "https://iam.example.org/", "client_id": "af"},
                   "event_organisers": ["teachers"]}  # fmt: skip
    with pytest.raises(facility.FacilityError, match="auth.event_organisers: only for auth.type 'local'"):
        facility.loads(yaml.safe_dump(raw))


def test_archive_is_due_after_the_grace_period_once(fac, tmp_path: Path) -> None:
    with pytest.raises(EventError, match="archive after: 400 days is out of range; choose 0 to 366"):
        _event(fac, archive_after_days=400)
    event = _event(fac, archive_after_days=1.5)  # closes 2026-12-07 17:00 UTC
    assert not event.archive_due(NOW + dt.timedelta(hours=8))
    assert event.archive_due(NOW + dt.timedelta(hours=8 + 36))
    assert not _event(fac).archive_due(NOW + dt.timedelta(days=400))  # no grace given: by hand only
    store = EventStore(events_path(tmp_path))
    store.add(event)
    store.mark_archived("tut", now=NOW + dt.timedelta(days=2))
    assert not store.get("tut").archive_due(NOW + dt.timedelta(days=3))
