"""Spawn storm (issue 15): more users than the machine starts at once log in and spawn together.

A real facility (`af up`, per-user Unix accounts, every user new, so every spawn creates its
account) with hub.spawn.concurrent below the number of users: every server becomes ready, the
queued ones were told on the spawn page how many others were ahead, and the hub's REST API
answered every probe meanwhile. The API's p95 is printed, not asserted: on a 2-core machine shared
with other test runs a hard bound would flake.
"""

from __future__ import annotations

import copy
import re
import uuid

import pytest

from facility.accounts import remove_account
from facility.model import UnixAccounts
from tests.harness import RunningFacility, embedded_raw
from tests.spawn_storm import stop_servers, storm

USERS = 14
CONCURRENT = 3
WAITING = re.compile(r"Waiting for (\d+) other servers? to start first")


@pytest.fixture(scope="module")
def storm_facility(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["hub"]["spawn"] = {"concurrent": CONCURRENT}
    raw["auth"]["unix_accounts"] = {"mode": "per-user"}
    return start_facility(raw)


@pytest.fixture
def new_users() -> list[str]:
    run = uuid.uuid4().hex[:6]
    names = [f"st{run}u{i}" for i in range(USERS)]
    yield names
    for name in names:
        remove_account(name, UnixAccounts())


def test_storm_of_new_accounts_all_get_their_server(storm_facility: RunningFacility, new_users) -> None:
    try:
        result = storm(storm_facility, new_users, timeout=400)
    finally:
        stop_servers(storm_facility, new_users)
    summary = result.summary()
    print("storm:", summary)
    failed = {u.name: u.error for u in result.users if not u.ready}
    assert not failed, f"{len(failed)} of {USERS} servers did not start: {failed}"
    # Only CONCURRENT start at once: the others waited and the spawn page said for how many.
    queued = [u for u in result.users if any(WAITING.search(m) for m in u.messages)]
    assert len(queued) >= USERS - CONCURRENT, [u.messages[:2] for u in result.users]
    # The count goes down as servers ahead start: the last in line saw it fall to the slot count.
    counts = [[int(n) for m in u.messages for n in WAITING.findall(m)] for u in queued]
    assert any(c[0] > c[-1] >= CONCURRENT for c in counts if c), counts
    # The hub answered its API throughout: every probe got its answer.
    assert result.probe_seconds and not result.probe_failures, result.probe_failures
