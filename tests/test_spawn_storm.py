"""Spawn storm (issue 15): more users than the machine starts at once log in and spawn together.

A real facility (`af up`, per-user Unix accounts, every user new, so every spawn creates its
account) with hub.spawn.concurrent below the number of users: every server becomes ready, the
queued ones were told on the spawn page how many others were ahead, and the hub's REST API
answered every probe meanwhile. The API's p95 is printed, not asserted: on a 2-core machine shared
with other test runs a hard bound would flake.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from facility.accounts import remove_account
from facility.model import UnixAccounts
from hub_config.spawn_queue import SpawnQueue
from tests.browser import chromium_page, log_in, sync_api_or_skip
from tests.harness import RunningFacility, embedded_raw
from tests.spawn_storm import stop_servers, storm

USERS = 14
CONCURRENT = 3
WAITING = re.compile(r"Waiting for (\d+) other servers? to start first")


def test_the_line_is_first_come_first_served_and_a_cancelled_place_is_given_on() -> None:
    async def scenario() -> list[str]:
        queue = SpawnQueue(limit=2)
        order: list[str] = []
        places = {name: queue.take() for name in "abcde"}  # a, b start; c, d, e wait in that order
        assert [places[n][1] is None for n in "abcde"] == [True, True, False, False, False]
        assert [queue.ahead_of(places[n][0]) for n in "cde"] == [2, 3, 4]

        async def wait(name: str) -> None:
            ticket, turn = places[name]
            await queue.wait(ticket, turn)
            order.append(name)

        tasks = {n: asyncio.ensure_future(wait(n)) for n in "cde"}
        await asyncio.sleep(0)
        tasks["c"].cancel()  # c's user gave up: d moves up
        await asyncio.sleep(0)
        assert queue.ahead_of(places["d"][0]) == 2
        queue.release(places["a"][0])
        await asyncio.sleep(0)
        assert order == ["d"] and queue.ahead_of(places["e"][0]) == 2
        queue.set_limit(3)  # facility.yaml raised the limit: e starts at once
        await asyncio.sleep(0)
        return order

    assert asyncio.run(scenario()) == ["d", "e"]


# What a local notebook server runs (hub_config.singleuser) up to its extensions being loaded.
SERVER_START = """
import hub_config.singleuser, json, sys
from jupyter_server.serverapp import ServerApp
ServerApp().initialize(["--port=0", "--ServerApp.allow_root=True", "--no-browser", "--ServerApp.token="])
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def test_a_notebook_server_starts_without_dask_and_the_iri_grammar(tmp_path: Path) -> None:
    env = {**os.environ, "AF_DASK_GATEWAYS": "{}", "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", SERVER_START], capture_output=True, text=True, cwd=tmp_path, env=env, check=True
    )
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "af_dask_lab.handlers" in loaded  # the Dask panel's server part is there...
    heavy = {"distributed", "dask", "dask_gateway", "rfc3987_syntax"} & {m.split(".")[0] for m in loaded}
    assert not heavy, f"imported at every server start: {sorted(heavy)}"  # ...its Dask is not, yet


@pytest.fixture(scope="module")
def storm_facility(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["hub"]["spawn"] = {"concurrent": CONCURRENT}
    raw["auth"]["unix_accounts"] = {"mode": "per-user"}
    # A storm is a tutorial's first minute: participants log in with the event's shared password.
    raw["auth"]["shared_password"] = True
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


def test_spawn_page_says_how_many_are_ahead(storm_facility: RunningFacility, new_users, artifacts: Path) -> None:
    """In a real browser: a user who spawns while others are starting sees the line on the spawn
    page, in plain words, and reaches JupyterLab without doing anything."""
    sync_api_or_skip()
    # A short line is enough to be seen waiting (the storm test above takes the full one).
    others, me = new_users[: CONCURRENT + 4], new_users[-1]
    outcomes: list = []
    background = threading.Thread(target=lambda: outcomes.append(storm(storm_facility, others, timeout=400)))
    shots = artifacts / "spawn-storm"
    shots.mkdir(exist_ok=True)
    background.start()
    try:
        time.sleep(3)  # the others have posted their forms: CONCURRENT start, the rest wait
        with chromium_page(1280, 800) as page:
            log_in(page, storm_facility.url, me, storm_facility.shared_password)
            page.wait_for_selector(".af-spawn-form")
            page.click('form button[type="submit"]')
            page.wait_for_url(re.compile(r"/hub/spawn-pending/"))
            page.wait_for_function(
                "document.querySelector('#progress-log') && "
                "document.querySelector('#progress-log').textContent.includes('to start first')"
            )
            page.evaluate("document.querySelector('#progress-details').open = true")
            page.screenshot(path=shots / "01-waiting-in-line.png")
            assert WAITING.search(page.locator("#progress-log").text_content())
            page.wait_for_url(re.compile(rf"/user/{me}/lab"), timeout=400_000)
            page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
            page.screenshot(path=shots / "02-lab-after-waiting.png")
    finally:
        background.join(600)
        stop_servers(storm_facility, new_users)
    assert outcomes and all(u.ready for u in outcomes[0].users), [u.error for u in outcomes[0].users]
