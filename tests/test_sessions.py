"""What happens to users' sessions (issue 15), on a real facility started with `af up`:

- a spawn that fails for a real reason (the user's Unix account name is held by an account the
  facility did not create) is in hub.log once, and the user sees the reason in plain words;
- facility.yaml's `hub.on_down: keep`: `af down` leaves alice's notebook server and Dask cluster
  running, stops every facility service, and after `af up` she works on with both;
- `hub.on_down: stop`: `af down` stops them and leaves no process of the facility.
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from facility import FacilityError, loads
from tests.browser import CHROMIUM, chromium_page
from tests.harness import (
    RunningFacility,
    embedded_raw,
    execute_in_kernel,
    facility_folder,
    free_port_block,
    run_af,
    write_facility,
)
from tests.test_restarts import (
    COMPUTE,
    START_CLUSTER,
    assert_no_port_clash,
    facility_processes,
    server_answers,
    wait_for,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)


def test_on_down_is_stop_or_keep() -> None:
    raw = embedded_raw()
    assert loads(yaml.safe_dump(raw)).hub.on_down == "stop"
    raw["hub"]["on_down"] = "keep"
    assert loads(yaml.safe_dump(raw)).hub.keeps_sessions
    raw["hub"]["on_down"] = "pause"
    with pytest.raises(FacilityError, match=r"hub\.on_down.*'pause'.*(stop|keep)"):
        loads(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def keeping() -> Iterator[RunningFacility]:
    """The embedded facility with hub.on_down: keep; stopped for good (`--sessions stop`) at the end."""
    root = facility_folder("sessions")
    port = free_port_block()
    raw = copy.deepcopy(embedded_raw())
    raw["hub"].update(on_down="keep", bind_url=f"http://127.0.0.1:{port}")
    running = RunningFacility(root / "state", write_facility(root / "facility.yaml", raw))
    running.af("up", "--facility", str(running.facility_file), "--port", str(port))
    yield running
    run_af(running.state_dir, "down", "--sessions", "stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _records_with(log: str, text: str) -> list[str]:
    """hub.log's records (their first lines, "[E 2026-..."), not traceback lines, holding `text`."""
    return [line for line in log.splitlines() if line.startswith("[") and text in line]


def reason(name: str) -> str:
    return f"Unix account 'af-{name}' exists but was not created by the analysis facility"


def _spawn_in_browser(running: RunningFacility, name: str, url: str, expected: str) -> None:
    shots = Path(__file__).resolve().parent.parent / "test-artifacts" / "sessions"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium_page(1200, 900) as page:
        page.goto(f"{url}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", running.password_of(name))
        page.click("#login_submit")
        page.goto(f"{url}/hub/spawn")
        page.wait_for_selector(".af-spawn-form")
        page.click('form button[type="submit"]')
        page.wait_for_function("text => document.body.innerText.includes(text)", arg=expected, timeout=60_000)
        page.screenshot(path=shots / "spawn-failed-progress.png", full_page=True)
        page.reload()
        page.wait_for_function("text => document.body.innerText.includes(text)", arg=expected, timeout=60_000)
        page.screenshot(path=shots / "spawn-failed-page.png", full_page=True)


def test_spawn_failure_is_logged_once_and_told_in_plain_words(keeping: RunningFacility) -> None:
    name = f"clash{uuid.uuid4().hex[:8]}"
    # The site already has a Unix account of that name, not made by the facility (no useradd hack
    # in the facility: the same refusal protects a real site's accounts).
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", f"af-{name}"], check=True)
    try:
        user = keeping.login(name)
        reply = user.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
        progress = user.http.get(f"{user.url}/hub/api/users/{name}/server/progress", timeout=60).text
        page = user.http.get(f"{user.url}/hub/spawn-pending/{name}", timeout=60).text
        again = user.http.get(f"{user.url}/hub/spawn-pending/{name}", timeout=60).text  # a second look
        log = (keeping.state_dir / "logs" / "hub.log").read_text(errors="replace")
        # What the user sees: the reason, in words, in the progress stream and on the spawn page.
        failed = [line for line in progress.splitlines() if '"failed": true' in line]
        assert failed and reason(name) in failed[-1], progress
        assert "Cannot start your server" in failed[-1]
        for text in (page, again):
            assert reason(name) in text.replace("&#39;", "'"), (reply.status_code, text[-3000:])
        records = _records_with(log, reason(name))
        assert len(records) == 1, records  # not once more per handler that saw the failure
        assert records[0].startswith("[E "), records
        # No second handler's copy (distributed's format) of anything.
        assert re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - .*$", log, re.MULTILINE) == []
        if CHROMIUM.exists():  # in a browser: a second attempt, from the spawn form
            _spawn_in_browser(keeping, name, user.url, reason(name))
    finally:
        subprocess.run(["userdel", f"af-{name}"], check=False)


def _alice_works(running: RunningFacility) -> SimpleNamespace:
    """alice's running server (started if needed): what test_restarts' helpers call `work`."""
    alice = running.login("alice")
    if not (alice.server() or {}).get("ready"):
        reply = alice.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
        assert reply.status_code == 200, reply.text[-2000:]
    server = alice.wait_ready()
    return SimpleNamespace(session=alice, url=f"{running.url}{server['url']}", token=alice.token())


def test_on_down_keep_leaves_server_and_cluster_to_the_next_up(keeping: RunningFacility) -> None:
    work = _alice_works(keeping)
    out = execute_in_kernel(work.url, work.token, START_CLUSTER)
    cluster = out.split("CLUSTER ")[1].split()[0]
    sessions_before = {p.pid for p in facility_processes(keeping) if p.username() == "af-alice"}
    assert sessions_before  # her server, its kernel's parent, her scheduler and workers

    down = " ".join(keeping.af("down").stdout.split())
    assert "keep running (hub.on_down: keep)" in down and "leftover" not in down, down
    alive = {p.pid for p in facility_processes(keeping)}
    assert sessions_before <= alive, sessions_before - alive  # nothing of alice's was stopped
    # Only users' processes are left: no hub, proxy, gateway or service of the facility.
    assert all(p.username() == "af-alice" for p in facility_processes(keeping)), [
        (p.pid, p.username(), p.cmdline()[:3]) for p in facility_processes(keeping)
    ]
    gateway_log = (keeping.state_dir / "logs" / "gateway-local.log").read_text()
    assert "clusters keep running" in gateway_log and f"Cluster {cluster} stopped" not in gateway_log

    keeping.af("up", "--facility", str(keeping.facility_file), "--port", str(keeping.runtime["ports"]["public"]))
    again = keeping.login("alice")
    wait_for(lambda: (again.server() or {}).get("ready"), "the hub to list alice's kept server as ready")
    wait_for(lambda: server_answers(work), "alice's kept server through the new proxy")
    result = execute_in_kernel(work.url, work.token, COMPUTE.format(name=cluster))
    assert "TOTAL 499999500000" in result
    assert_no_port_clash(keeping)
    hub_log = (keeping.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert "Leaving single-user servers running" in hub_log


def test_on_down_stop_stops_server_and_cluster(keeping: RunningFacility) -> None:
    _alice_works(keeping)  # still running from the test above, or started anew
    raw = yaml.safe_load(keeping.facility_file.read_text())
    raw["hub"]["on_down"] = "stop"  # `af down` reads facility.yaml afresh: the operator's edit counts
    write_facility(keeping.facility_file, raw)
    down = " ".join(keeping.af("down").stdout.split())
    assert "1 notebook servers stopped" in down and "keep running" not in down, down
    assert "leftover" not in down, down
    assert facility_processes(keeping) == []
    gateway_log = (keeping.state_dir / "logs" / "gateway-local.log").read_text()
    assert "stopping its clusters (af down)" in gateway_log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{keeping.url}/hub/health", timeout=5)


def test_down_sessions_option_takes_stop_or_keep(tmp_path: Path) -> None:
    result = run_af(tmp_path, "down", "--sessions", "pause", check=False)
    assert result.returncode == 2 and "'pause' is not one of 'stop', 'keep'" in result.stderr


def test_log_filter_keeps_the_first_record_of_a_failure_and_other_errors() -> None:
    from hub_config.log_once import SpawnFailureOnce

    def record(module: str, message: str) -> logging.LogRecord:
        return logging.makeLogRecord({"levelno": logging.ERROR, "msg": message, "module": module})

    keep = SpawnFailureOnce()
    assert keep.filter(record("pages", "Previous spawn for bob failed: disk full"))  # never logged before
    assert keep.filter(record("user", "Unhandled error starting bob's server: disk full"))
    assert not keep.filter(record("pages", "Previous spawn for bob failed: disk full"))
    assert not keep.filter(record("pages", "Error starting server bob: disk full"))
    assert keep.filter(record("pages", "Previous spawn for bob failed: quota exceeded"))
    assert keep.filter(record("base", "Failed to add bob to proxy: disk full"))
