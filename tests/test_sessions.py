"""What happens to users' sessions (issue 15), on a real facility started with `af up`:

- a spawn that fails for a real reason (the user's Unix account name is held by an account the
  facility did not create) is in hub.log once, and the user sees the reason in plain words;
- facility.yaml's `hub.on_down: keep`: `af down` leaves alice's notebook server and Dask cluster
  running, stops every facility service, and after `af up` she works on with both;
- `af down --sessions stop` overrides `keep` for one shutdown and leaves no process of the facility.

The default `on_down: stop` is test_restarts' last test.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from facility import FacilityError, loads
from hub_config.log_once import SpawnFailureOnce
from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip, wait_for_text
from tests.harness import RunningFacility, embedded_raw, execute_in_kernel, run_af, scope_account_prefix
from tests.supervision import wait_for
from tests.test_restarts import (
    COMPUTE,
    Work,
    assert_no_port_clash,
    facility_processes,
    server_answers,
    start_alices_work,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)


def test_on_down_is_stop_or_keep() -> None:
    raw = embedded_raw()
    assert loads(yaml.safe_dump(raw)).hub.on_down == "stop"
    raw["hub"]["on_down"] = "keep"
    assert loads(yaml.safe_dump(raw)).hub.on_down == "keep"
    raw["hub"]["on_down"] = "pause"
    with pytest.raises(FacilityError, match=r"hub\.on_down.*'pause'.*(stop|keep)"):
        loads(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def keeping(start_facility) -> RunningFacility:
    """The embedded facility with hub.on_down: keep (conftest stops it with `--sessions stop`)."""
    raw = copy.deepcopy(embedded_raw())
    # The idle culler runs too: after `af down` and `af up`, one copy of it (assert_no_port_clash).
    raw["hub"].update(on_down="keep", idle_cull={"minutes": 60})
    return start_facility(raw)


def _records_with(log: str, text: str) -> list[str]:
    """hub.log's records (their first lines, "[E 2026-..."), not traceback lines, holding `text`."""
    return [line for line in log.splitlines() if line.startswith("[") and text in line]


@pytest.fixture(scope="module")
def clash(keeping: RunningFacility) -> Iterator[str]:
    """A hub user whose facility account name (<prefix><name>) the site already gave to an account of its own."""
    name = f"clash{uuid.uuid4().hex[:8]}"
    # No useradd hack in the facility: the same refusal protects a real site's accounts.
    account = f"{scope_account_prefix()}{name}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", account], check=True)
    yield name
    subprocess.run(["userdel", account], check=False)


def reason(name: str) -> str:
    return f"Unix account '{scope_account_prefix()}{name}' exists but was not created by the analysis facility"


def test_spawn_failure_is_logged_once_and_told_in_plain_words(keeping: RunningFacility, clash: str) -> None:
    user = keeping.login(clash)
    reply = user.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    progress = user.progress().text
    page = user.http.get(f"{user.url}/hub/spawn-pending/{clash}", timeout=60).text
    again = user.http.get(f"{user.url}/hub/spawn-pending/{clash}", timeout=60).text  # a second look
    log = (keeping.state_dir / "logs" / "hub.log").read_text(errors="replace")
    # What the user sees: the reason, in words, in the progress stream and on the spawn page.
    failed = [line for line in progress.splitlines() if '"failed": true' in line]
    assert failed and reason(clash) in failed[-1], progress
    assert "Cannot start your server" in failed[-1]
    for text in (page, again):
        assert reason(clash) in text.replace("&#39;", "'"), (reply.status_code, text[-3000:])
    records = _records_with(log, reason(clash))
    assert len(records) == 1, "\n".join(records)  # not once more per handler that saw the failure
    assert records[0].startswith("[E "), records


def test_spawn_failure_in_a_browser(keeping: RunningFacility, clash: str) -> None:
    """A second attempt, from the spawn form: the reason on the progress page and after a reload."""
    sync_api_or_skip()
    shots = emptied_artifacts("sessions")
    expected = reason(clash)
    with chromium_page(1200, 900) as page:
        log_in(page, keeping.url, clash, keeping.password_of(clash))
        page.goto(f"{keeping.url}/hub/spawn")
        page.wait_for_selector(".af-spawn-form")
        page.click('form button[type="submit"]')
        wait_for_text(page, expected)
        page.screenshot(path=shots / "spawn-failed-progress.png", full_page=True)
        page.reload()
        wait_for_text(page, expected)
        page.screenshot(path=shots / "spawn-failed-page.png", full_page=True)
    log = (keeping.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert len(_records_with(log, expected)) == 2, _records_with(log, expected)  # one per attempt


@pytest.fixture(scope="module")
def work(keeping: RunningFacility) -> Work:
    """alice's server and Dask cluster: kept by the first `af down`, stopped by the second."""
    return start_alices_work(keeping)


def test_on_down_keep_leaves_server_and_cluster_to_the_next_up(keeping: RunningFacility, work: Work) -> None:
    sessions_before = {p.pid for p in facility_processes(keeping) if p.username() == f"{scope_account_prefix()}alice"}
    assert sessions_before  # her server, its kernel, her scheduler and worker

    down = " ".join(keeping.af("down").stdout.split())
    assert "keep running (hub.on_down: keep)" in down and "leftover" not in down, down
    alive = {p.pid for p in facility_processes(keeping)}
    assert sessions_before <= alive, sessions_before - alive  # nothing of alice's was stopped
    # Only users' processes are left: no hub, proxy, gateway or service of the facility.
    assert all(p.username() == f"{scope_account_prefix()}alice" for p in facility_processes(keeping)), [
        (p.pid, p.username(), p.cmdline()[:3]) for p in facility_processes(keeping)
    ]
    gateway_log = (keeping.state_dir / "logs" / "gateway-local.log").read_text()
    assert "clusters keep running" in gateway_log and f"Cluster {work.cluster} stopped" not in gateway_log

    keeping.af("up", "--facility", str(keeping.facility_file), "--port", str(keeping.runtime["ports"]["public"]))
    wait_for(lambda: (work.session.server() or {}).get("ready"), "the hub to list alice's kept server as ready")
    wait_for(lambda: server_answers(work), "alice's kept server through the new proxy")
    result = execute_in_kernel(work.url, work.token, COMPUTE.format(name=work.cluster))
    assert "TOTAL 499999500000" in result
    assert_no_port_clash(keeping)
    hub_log = (keeping.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert "Leaving single-user servers running" in hub_log


def test_down_sessions_stop_overrides_keep(keeping: RunningFacility, work: Work) -> None:
    down = " ".join(keeping.af("down", "--sessions", "stop").stdout.split())
    assert "1 notebook servers stopped" in down and "keep running" not in down, down
    assert "leftover" not in down, down  # each was stopped by its owner, not by the sweep
    assert facility_processes(keeping) == []
    gateway_log = (keeping.state_dir / "logs" / "gateway-local.log").read_text()
    assert "stopping its clusters (af down)" in gateway_log and f"Cluster {work.cluster} stopped" in gateway_log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{keeping.url}/hub/health", timeout=5)


def test_down_sessions_option_takes_stop_or_keep(tmp_path: Path) -> None:
    result = run_af(tmp_path, "down", "--sessions", "pause", check=False)
    assert result.returncode == 2 and "'pause' is not one of 'stop', 'keep'" in result.stderr


def test_log_filter_keeps_the_first_record_of_a_failure_and_other_errors() -> None:
    def record(module: str, message: str) -> logging.LogRecord:
        return logging.makeLogRecord({"levelno": logging.ERROR, "msg": message, "module": module})

    keep = SpawnFailureOnce()
    assert keep.filter(record("pages", "Previous spawn for bob failed: disk full"))  # never logged before
    assert keep.filter(record("user", "Unhandled error starting bob's server: disk full"))
    assert not keep.filter(record("pages", "Previous spawn for bob failed: disk full"))
    assert not keep.filter(record("pages", "Error starting server bob: disk full"))
    assert keep.filter(record("pages", "Previous spawn for bob failed: quota exceeded"))
    assert keep.filter(record("base", "Failed to add bob to proxy: disk full"))
