"""Idle culling (issue 19) on the real facility: per-group timeouts, busy kernels, idle clusters.

hub.idle_cull gives the group `workshop` 1 minute, the group `long` 3 minutes and everyone else
60 (a culler checking every 10 s). carol (workshop) leaves her server idle and it is stopped;
dave (workshop) starts a silent 100 s cell (`time.sleep`, no output) and disconnects, as a user
closing the tab does (with the websocket left open, a first version of this test passed even
without the busy-kernel extension: the open connection kept the server active); the busy kernel
keeps his server past the timeout and the cell finishes. frank (workshop and long) gets the
longer 3 minutes, erin (no group) the default. erin's Dask cluster on a backend with
dask.idle_timeout_minutes 1 is stopped by its gateway. About 2 minutes in all.
"""

from __future__ import annotations

import json
import pwd
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from facility.accounts import unix_name
from tests.harness import HubSession, RunningFacility, embedded_raw, scope_account_prefix

TIMEOUT_S = 60
BUSY_CELL_S = 100
LOCAL = {"backend": "local", "cores": "1", "memory_gb": "1", "image": "coffea-2026"}

pytestmark = [
    pytest.mark.side_facility,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def running(start_facility) -> RunningFacility:
    raw = embedded_raw()
    raw["auth"]["groups"] = {"workshop": ["carol", "dave", "frank"], "long": ["frank"]}
    raw["hub"]["idle_cull"] = {"minutes": 60, "groups": {"workshop": 1, "long": 3}, "check_every_seconds": 10}
    raw["backends"][0]["dask"]["idle_timeout_minutes"] = 1
    return start_facility(raw)


@pytest.fixture(scope="module")
def sessions(running: RunningFacility) -> dict[str, HubSession]:
    users = {name: running.login(name) for name in ("carol", "dave", "erin", "frank")}
    for session in users.values():
        reply = session.post_spawn_form(LOCAL)
        assert reply.status_code == 200, reply.text[-2000:]
    for session in users.values():
        session.wait_ready()
    return users


async def _start_cell(server_url: str, token: str, code: str) -> None:
    """Start `code` in a new kernel and disconnect once it runs: no browser stays attached."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{server_url}api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    kernel.raise_for_status()
    ws_url = server_url.replace("http", "ws", 1) + f"api/kernels/{kernel.json()['id']}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    message = {"header": {**header, "version": "5.3"}, "parent_header": {}, "metadata": {}, "content": content}
    conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
    while True:
        msg = json.loads(await conn.read_message())
        if msg.get("msg_type") == "execute_input" and msg.get("parent_header", {}).get("msg_id") == msg_id:
            break
    conn.close()


@pytest.fixture(scope="module")
def busy_cell(running: RunningFacility, sessions: dict[str, HubSession]) -> dict[str, Any]:
    """dave's kernel runs a cell that prints nothing for BUSY_CELL_S seconds, then writes a file in
    his home; the test disconnects at once, as a user who closes the browser tab does."""
    dave = sessions["dave"]
    done = Path(pwd.getpwnam(unix_name("dave", scope_account_prefix())).pw_dir) / "busy-cell-done"
    done.unlink(missing_ok=True)
    code = (
        f"import pathlib, time\nfor _ in range({BUSY_CELL_S}):\n    time.sleep(1)\n"
        "pathlib.Path('~/busy-cell-done').expanduser().write_text('done')"
    )
    started = time.monotonic()
    IOLoop().run_sync(lambda: _start_cell(f"{running.url}/user/dave/", dave.token(), code), timeout=60)
    return {"started": started, "done": done}


@pytest.fixture(scope="module")
def idle_cluster(running: RunningFacility, sessions: dict[str, HubSession]) -> Iterator[tuple[Gateway, str, float]]:
    gateway = Gateway(
        running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=sessions["erin"].token())
    )
    cluster = gateway.new_cluster(shutdown_on_close=False)
    yield gateway, cluster.name, time.monotonic()
    gateway.close()


def admin(running: RunningFacility) -> HubSession:
    return running.login("admin", running.admin_password)


def test_each_user_is_in_the_group_of_their_longest_timeout(running, sessions) -> None:
    boss = admin(running)
    groups = {name: set(boss.api("GET", f"/users/{name}").json()["groups"]) for name in sessions}
    assert groups["carol"] == {"workshop", "af-idle-1m"}
    assert groups["frank"] == {"workshop", "long", "af-idle-3m"}  # the longer of 1 and 3
    assert groups["erin"] == {"af-idle-60m"}  # the default
    services = {s["name"] for s in boss.api("GET", "/services").json().values()}
    assert {"idle-culler", "idle-culler-1m", "idle-culler-3m"} <= services


def test_idle_server_is_culled_and_busy_one_is_not(running, sessions, busy_cell, idle_cluster) -> None:
    carol, dave = sessions["carol"], sessions["dave"]
    deadline = time.monotonic() + TIMEOUT_S + 60
    while carol.server() is not None:
        assert time.monotonic() < deadline, "carol's idle server was not culled within 2 minutes"
        time.sleep(2)
    culled_after = time.monotonic() - busy_cell["started"]
    # dave's cell has run past the timeout plus culler checks: his server must still be there.
    time.sleep(max(0, busy_cell["started"] + TIMEOUT_S + 30 - time.monotonic()))
    assert dave.server() is not None, "dave's server was culled while his kernel was running a cell"
    while not busy_cell["done"].exists():  # the cell finishes: its kernel was never stopped
        assert dave.server() is not None, "dave's server was culled while his kernel was running a cell"
        assert time.monotonic() < busy_cell["started"] + BUSY_CELL_S + 30, "dave's cell did not finish"
        time.sleep(2)
    print(f"carol culled {culled_after:.0f} s after dave's cell started; dave's cell ran {BUSY_CELL_S} s")


def test_other_groups_keep_their_longer_timeouts(sessions) -> None:
    # Past the workshop's minute (the test above waited 100 s): frank (3 min) and erin (60) still run.
    assert sessions["frank"].server() is not None
    assert sessions["erin"].server() is not None


def test_idle_dask_cluster_is_stopped(idle_cluster) -> None:
    gateway, name, created = idle_cluster
    deadline = created + TIMEOUT_S + 60
    while name in {c.name for c in gateway.list_clusters()}:
        assert time.monotonic() < deadline, "the idle Dask cluster still runs 2 minutes after it was created"
        time.sleep(2)
    print(f"idle cluster stopped {time.monotonic() - created:.0f} s after it was created")
