"""The hub's own pages in a real browser (Debian Chromium driven by Playwright), light theme at
1440x900 and at 420 px wide, and dark theme (text contrast measured): the login banner, the spawn
form's labels, image choice and lifetime note (values from facility.yaml), the progress bar moving
through the spawner's steps, the options remembered on the next spawn, /hub/home with the server's
backend, size, age, kernels and Dask clusters, and Stop asking first while a kernel and a cluster
run.

Screenshots go to test-artifacts/spawnpage/; the measured spawn times (Start click -> JupyterLab's
launcher shown, and each line of the spawn page's log) to test-artifacts/spawnpage/spawn-times.json.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

import facility
from facility.accounts import remove_account
from hub_config.spawn_words import lifetime_lines
from tests.browser import (
    RECORD_SPAWN_PROGRESS,
    chromium_page,
    contrast_of,
    emptied_artifacts,
    send_login,
    sync_api_or_skip,
)
from tests.harness import HubSession, RunningFacility, embedded_raw, scope_account_prefix

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)

USER = "spawnpage-user"
IDLE_CULL_MINUTES = 45  # not the default: the form must show facility.yaml's value

sync_api = sync_api_or_skip()


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("spawnpage")


@pytest.fixture(scope="module")
def hub(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["hub"]["idle_cull"] = {"minutes": IDLE_CULL_MINUTES}
    return start_facility(raw)


@pytest.fixture(scope="module")
def user(hub: RunningFacility) -> Iterator[str]:
    # A new account: the first spawn creates it, and the progress says so.
    remove_account(USER, facility.load(hub.facility_file).auth.unix_accounts)
    yield USER
    hub.login(USER).stop_server()


@pytest.fixture(scope="module")
def spawn_times(shots: Path) -> Iterator[dict[str, dict[str, float]]]:
    times: dict[str, dict[str, float]] = {}
    yield times
    if times:
        # The machine's load beside the figures: a spawn on a busy host says little about the hub.
        result = {"seconds_after_the_start_click": times, "load_average_1_5_15_min": os.getloadavg()}
        (shots / "spawn-times.json").write_text(json.dumps(result, indent=2) + "\n")


def _login(page: Any, hub: RunningFacility, shots: Path, name: str, also_narrow: bool = False) -> None:
    page.goto(f"{hub.url}/hub/login")
    banner = page.locator(".announcement")
    sync_api.expect(banner).to_contain_text("Welcome to")
    # Not Bootstrap's warning yellow: a plain line on the page's own background.
    assert "alert-warning" not in (banner.get_attribute("class") or "")
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") in ("rgba(0, 0, 0, 0)", "transparent")
    page.screenshot(path=shots / f"{name}-login.png", full_page=True)
    if also_narrow:
        _narrow_too(page, shots / f"{name}-narrow-login.png")
    send_login(page, USER, hub.password_of(USER))
    try:
        page.wait_for_selector(".af-spawn-form")
    except sync_api.TimeoutError:
        page.screenshot(path=shots / f"{name}-FAILED-no-spawn-form.png", full_page=True)
        raise


def _wait_stopped(session: Any) -> None:
    deadline = time.monotonic() + 90
    while session.server() is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session.server() is None, "the server still runs 90 s after the user confirmed Stop"


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"


def _narrow_too(page: Any, path: Path) -> None:
    """The open page again at 420 px wide: no sideways scrolling, a screenshot at `path`; then back."""
    wide = page.viewport_size
    page.set_viewport_size({"width": 420, "height": 900})
    try:
        _no_sideways_scroll(page)
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(wide)


def _spawn_and_time(page: Any, shots: Path, name: str) -> tuple[dict[str, float], list[int], str]:
    """Click Start; the seconds until JupyterLab's launcher shows (and until each step's line in
    the log), the bar's values, the event log."""
    page.evaluate("sessionStorage.clear()")
    clicked = page.evaluate("Date.now()")
    page.click('form button[type="submit"]')
    page.wait_for_url(re.compile(r"/hub/spawn-pending/"))
    page.wait_for_selector("#progress-log .progress-log-event")
    sync_api.expect(page.locator("#progress-log")).to_be_visible()  # the event log is open, not collapsed
    page.screenshot(path=shots / f"{name}-progress.png", full_page=True)
    page.wait_for_url(re.compile(rf"/user/{USER}/lab"), timeout=120_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    launcher = page.evaluate("Date.now()")
    values = json.loads(page.evaluate("sessionStorage.getItem('afProgress') || '[]'"))
    text = page.evaluate("sessionStorage.getItem('afLog') || ''")
    steps = json.loads(page.evaluate("sessionStorage.getItem('afLogTimes') || '[]'"))
    timing = {line.split(" (")[0][:60]: round((at - clicked) / 1000, 2) for at, line in steps}
    timing["JupyterLab launcher shown"] = round((launcher - clicked) / 1000, 2)
    return timing, values, text


def test_spawn_page_remembers_options_and_home_asks_before_stop(
    hub: RunningFacility, user: str, shots: Path, spawn_times: dict[str, dict[str, float]]
) -> None:
    expect = sync_api.expect
    fac = facility.load(hub.facility_file)
    local = fac.backend("local")
    with chromium_page(1440, 900) as page:
        page.add_init_script(RECORD_SPAWN_PROGRESS)
        _login(page, hub, shots, "01-wide")

        # The form: the card names the backend once, the image is a drop-down, the lifetime note.
        card = page.locator('.af-backend[data-backend="local"]')
        expect(card.locator("strong")).to_have_text("This machine")
        assert card.locator(".af-kind").count() == 0  # no "THIS MACHINE" badge repeating the label
        image = page.locator("#af-local-image")
        assert "form-select" in image.get_attribute("class")
        assert image.evaluate("e => getComputedStyle(e).backgroundImage") != "none"  # the drop-down arrow
        lifetime = page.locator('.af-lifetime[data-backend="local"]')
        expect(lifetime).to_contain_text(f"after {IDLE_CULL_MINUTES} minutes with no open JupyterLab tab")
        expect(lifetime).to_contain_text("Wall time: none on this backend.")
        expect(lifetime).to_contain_text("Dask clusters with no client for 1 hour are stopped.")
        assert lifetime.locator("li").all_text_contents() == lifetime_lines(fac, local)
        assert page.locator("#af-remembered").count() == 0  # nothing to remember yet
        page.fill("#af-local-cores", "2")
        page.fill("#af-local-memory_gb", "3")
        page.screenshot(path=shots / "02-wide-spawn-form.png", full_page=True)

        # First start: a new Unix account. The bar moves through the steps, the log names them.
        timing, values, log = _spawn_and_time(page, shots, "03-wide-first-start")
        spawn_times["first start, new account, 1440x900"] = timing
        assert len(set(values)) >= 4 and values == sorted(values) and values[-1] == 100, values
        assert any(10 <= v < 100 for v in values), values
        for step in (
            "Request checked: This machine, 2 cores, 3 GB memory",
            "Creating your own Unix account on the facility (first start only)",
            "Your server process started on this machine",
            "Waiting for your server to answer",
            "Server ready",
        ):
            assert step in log, log
        page.screenshot(path=shots / "04-wide-jupyterlab.png")

        # A kernel and a Dask cluster run in the server.
        session = hub.login(USER)
        server = session.server()
        token = session.token()
        kernel = requests.post(
            f"{hub.url}{server['url']}api/kernels",
            headers={"Authorization": f"token {token}"},
            json={"name": "python3"},
            timeout=60,
        )
        kernel.raise_for_status()
        with Gateway(hub.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=token)) as gateway:
            cluster = gateway.new_cluster(shutdown_on_close=False)
            try:
                _home_shows_the_server_and_stop_asks(page, session, shots, "05-wide")
            finally:
                cluster.shutdown()

        # Kept where the hub keeps spawner state (its database): a restarted hub remembers too.
        assert _remembered_in_database(hub)["local"]["memory_gb"] == 3

        # Second start: the form is filled in with the last choices.
        page.goto(f"{hub.url}/hub/spawn")
        expect(page.locator("#af-remembered")).to_have_text("Filled in with your choices from last time.")
        expect(page.locator("#af-local-cores")).to_have_value("2")
        expect(page.locator("#af-local-memory_gb")).to_have_value("3")
        expect(page.locator('input[name="backend"][value="local"]')).to_be_checked()
        page.screenshot(path=shots / "07-wide-form-remembered.png", full_page=True)
        timing, values, log = _spawn_and_time(page, shots, "08-wide-second-start")
        spawn_times["second start, account exists, 1440x900"] = timing
        assert f"Your Unix account {scope_account_prefix()}{USER} is ready" in log, log
        assert len(set(values)) >= 4 and values == sorted(values), values
        session.stop_server()


def _remembered_in_database(hub: RunningFacility) -> dict[str, Any]:
    """The remembered options in the state of the user's default spawner in the hub's database."""
    deadline = time.monotonic() + 15
    while True:
        with sqlite3.connect(hub.state_dir / "jupyterhub.sqlite") as db:
            row = db.execute(
                "SELECT s.state FROM spawners s JOIN users u ON s.user_id = u.id WHERE u.name = ? AND s.name = ''",
                (USER,),
            ).fetchone()
        options = json.loads(row[0] or "{}").get("last_options", {}).get("options", {}) if row else {}
        if options or time.monotonic() > deadline:
            return options
        time.sleep(0.5)


def _home_shows_the_server_and_stop_asks(page: Any, session: HubSession, shots: Path, name: str) -> None:
    expect = sync_api.expect
    page.goto(f"{session.url}/hub/home")
    expect(page.locator("#af-server-backend")).to_have_text("This machine")
    expect(page.locator("#af-server-size")).to_have_text("2 cores, 3 GB memory")
    expect(page.locator("#af-server-age")).to_contain_text(re.compile(r"started (less than a minute|\d+ min) ago"))
    expect(page.locator("#af-server-kernels")).to_have_text("1 kernel running", timeout=30_000)
    expect(page.locator("#af-server-clusters")).to_have_text("1 cluster running (1 on This machine)", timeout=30_000)
    _no_sideways_scroll(page)
    page.screenshot(path=shots / f"{name}-home.png", full_page=True)

    # Stop asks first; "Keep it running" keeps it.
    page.click("#stop")
    dialog = page.locator("#af-stop-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Your server runs 1 kernel and 1 Dask cluster.")
    page.screenshot(path=shots / f"{name}-stop-asks.png")
    page.click("#af-stop-cancel")
    expect(dialog).to_be_hidden()
    time.sleep(2)
    assert session.server() is not None, "the server stopped although the user chose to keep it"

    # "Stop server" stops it.
    page.click("#stop")
    page.click("#af-stop-confirm")
    _wait_stopped(session)
    expect(page.locator("#af-server")).to_be_hidden()
    page.screenshot(path=shots / f"{name}-stopped.png", full_page=True)


def test_narrow_window(hub: RunningFacility, user: str, shots: Path, spawn_times: dict[str, dict[str, float]]) -> None:
    """420 px wide: the same pages without sideways scrolling; Stop still asks."""
    expect = sync_api.expect
    with chromium_page(420, 900) as page:
        page.add_init_script(RECORD_SPAWN_PROGRESS)
        _login(page, hub, shots, "10-narrow")
        _no_sideways_scroll(page)
        expect(page.locator('.af-lifetime[data-backend="local"]')).to_be_visible()
        page.screenshot(path=shots / "11-narrow-spawn-form.png", full_page=True)
        timing, values, _ = _spawn_and_time(page, shots, "12-narrow-start")
        spawn_times["start, account exists, 420x900"] = timing
        assert len(set(values)) >= 4 and values == sorted(values), values
        session = hub.login(USER)
        server = session.server()
        requests.post(
            f"{hub.url}{server['url']}api/kernels",
            headers={"Authorization": f"token {session.token()}"},
            json={"name": "python3"},
            timeout=60,
        ).raise_for_status()
        page.goto(f"{hub.url}/hub/home")
        expect(page.locator("#af-server-kernels")).to_have_text("1 kernel running", timeout=30_000)
        expect(page.locator("#af-server-clusters")).to_have_text("none running", timeout=30_000)
        _no_sideways_scroll(page)
        page.screenshot(path=shots / "13-narrow-home.png", full_page=True)
        page.click("#stop")
        expect(page.locator("#af-stop-dialog")).to_contain_text("Your server runs 1 kernel.")
        page.screenshot(path=shots / "14-narrow-stop-asks.png")
        page.click("#af-stop-confirm")
        expect(page.locator("#af-server")).to_be_hidden(timeout=60_000)
        _wait_stopped(session)  # the next test logs in to the spawn form, not to a server still stopping


def test_dark_theme(hub: RunningFacility, user: str, shots: Path, spawn_times: dict[str, dict[str, float]]) -> None:
    """With the system's dark colour scheme the hub's pages turn dark (JupyterHub's own darkmode.js)
    and the facility's parts of them stay readable: text at WCAG's contrast of 4.5 at least. The
    login page, spawn form, home page and Stop's question also at 420 px wide."""
    expect = sync_api.expect

    def readable(page: Any, *selectors: str) -> None:
        for selector in selectors:
            ratio = contrast_of(page.locator(selector))
            assert ratio >= 4.5, f"{selector}: contrast {ratio:.2f} against its background in the dark theme"

    with chromium_page(1440, 900, color_scheme="dark") as page:
        page.add_init_script(RECORD_SPAWN_PROGRESS)
        _login(page, hub, shots, "20-dark", also_narrow=True)
        assert page.evaluate("document.documentElement.getAttribute('data-bs-theme')") == "dark"
        readable(page, ".af-help", ".af-backend strong", ".af-backend p", ".af-backend .af-limit", ".af-lifetime li")
        readable(page, "label[for='af-local-image']", ".af-spawn-form h4")
        page.screenshot(path=shots / "21-dark-spawn-form.png", full_page=True)
        _narrow_too(page, shots / "21-dark-narrow-spawn-form.png")
        timing, _, _ = _spawn_and_time(page, shots, "22-dark-start")
        spawn_times["start, account exists, dark theme"] = timing
        session = hub.login(USER)
        requests.post(
            f"{hub.url}{session.server()['url']}api/kernels",
            headers={"Authorization": f"token {session.token()}"},
            json={"name": "python3"},
            timeout=60,
        ).raise_for_status()  # a running kernel: Stop asks first
        page.goto(f"{hub.url}/hub/home")
        expect(page.locator("#af-server-kernels")).to_have_text("1 kernel running", timeout=30_000)
        readable(page, "#af-server-title", "#af-server dt", "#af-server-backend", "#af-server-size")
        page.screenshot(path=shots / "23-dark-home.png", full_page=True)
        _narrow_too(page, shots / "23-dark-narrow-home.png")
        page.click("#stop")
        expect(page.locator("#af-stop-dialog")).to_be_visible()
        readable(page, "#af-stop-title", "#af-stop-what")
        page.screenshot(path=shots / "24-dark-stop-asks.png")
        _narrow_too(page, shots / "24-dark-narrow-stop-asks.png")
        page.click("#af-stop-confirm")
        expect(page.locator("#af-server")).to_be_hidden(timeout=60_000)
        _wait_stopped(session)  # the next test logs in to the spawn form, not to a server still stopping
