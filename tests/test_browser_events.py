"""An event's participant in a real browser (Debian Chromium through Playwright): the printed
handout sheet, the login with its password, the spawn form limited to the event's allowance,
JupyterLab opening on the event's materials; after `af event end`, the login page says the event
ended. Screenshots go to test-artifacts/events/."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import facility
from facility.accounts import remove_account
from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.conftest import StartFacility
from tests.harness import RunningFacility, embedded_raw

sync_api = sync_api_or_skip()
expect = sync_api.expect


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("events")


@pytest.fixture(scope="module")
def running(start_facility: StartFacility) -> RunningFacility:
    fac = start_facility(embedded_raw())
    for name in ("tutorial-01", "tutorial-02", "tutorial-03"):  # a first start: no home from an earlier run
        remove_account(name, facility.load(fac.facility_file).auth.unix_accounts)
    return fac


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    with chromium_page(1280, 800) as new_page:
        yield new_page


def _at(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")


def test_participant_logs_in_with_the_handout(running: RunningFacility, tmp_path: Path, page, shots: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Welcome to the tutorial"}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (course / "welcome.ipynb").write_text(json.dumps(notebook))
    handout = tmp_path / "handout"
    running.af(
        "event", "create", "tutorial", "--start", _at(-1), "--end", _at(60), "--participants", "3",
        "--max", "cores=1", "--max", "memory_gb=2", "--materials", str(course), "--handout", str(handout),
    )  # fmt: skip
    with (handout / "tutorial-logins.csv").open() as rows:
        name, password = next((r["name"], r["password"]) for r in csv.DictReader(rows))

    # 1. The printable sheet, one card per participant.
    page.goto((handout / "tutorial-logins.html").as_uri())
    expect(page.locator(".card")).to_have_count(3)
    expect(page.locator(".card .password").first).to_have_text(password)
    page.screenshot(path=shots / "01-handout-sheet.png", full_page=True)

    # 2. The login with the handout's name and password; the form offers only the event's sizes.
    log_in(page, running.url, name, password)
    page.wait_for_selector(".af-spawn-form")
    expect(page.locator("#af-local-cores")).to_have_attribute("max", "1")
    expect(page.locator("#af-local-memory_gb")).to_have_attribute("max", "2")
    page.screenshot(path=shots / "02-spawn-form-event-allowance.png", full_page=True)

    # 3. JupyterLab opens on the event's materials, pulled into ~/tutorial.
    page.click('form button[type="submit"]')
    page.wait_for_url(re.compile(rf"/user/{name}/lab/tree/tutorial"), timeout=180_000)
    page.wait_for_selector("#jp-main-dock-panel")
    listing = page.locator(".jp-DirListing-content")
    expect(listing.get_by_text("welcome.ipynb")).to_be_visible(timeout=60_000)
    expect(page.locator(".jp-FileBrowser .jp-BreadCrumbs")).to_contain_text("tutorial")
    page.screenshot(path=shots / "03-lab-with-materials.png")

    # 4. The end: the server stops and the login page says why it refuses.
    assert "1 servers stopped" in running.af("event", "end", "tutorial").stdout
    page.context.clear_cookies()
    log_in(page, running.url, name, password)
    message = page.locator(".login_error")
    expect(message).to_contain_text("The event 'tutorial' ended at")
    expect(message).to_contain_text("its accounts are closed.")
    page.screenshot(path=shots / "04-login-after-the-end.png")
