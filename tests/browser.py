"""Debian Chromium driven by Playwright, as the browser tests start it (see ../shared/FACTS.md)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# `playwright install` cannot download browsers here: Debian's chromium, with these flags.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@contextlib.contextmanager
def chromium_page(width: int, height: int) -> Iterator[Any]:
    """A fresh page in a new headless Chromium with a `width` x `height` viewport; closed afterwards."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(60_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def sync_api_or_skip() -> Any:
    """Playwright's sync API; skips the test (or the module, called at import) when playwright or
    Debian's Chromium is not installed."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pyproject [test])")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/test-install.d/50-browser.sh)", allow_module_level=True)
    return sync_api


def emptied_artifacts(name: str) -> Path:
    """test-artifacts/<name>, emptied: it holds the screenshots of this run only."""
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def send_login(page: Any, user: str, password: str) -> None:
    """Fill in the hub's login form on the open page and send it, as a person does."""
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def log_in(page: Any, hub_url: str, user: str, password: str) -> None:
    """Open the hub's login page at hub_url and log in."""
    page.goto(f"{hub_url}/hub/login")
    send_login(page, user, password)
