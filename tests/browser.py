"""Debian Chromium driven by Playwright, as the browser tests start it (see ../shared/FACTS.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
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
