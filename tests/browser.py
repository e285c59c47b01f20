"""Debian Chromium driven by Playwright, as the browser tests start it (see ../shared/FACTS.md)."""

from __future__ import annotations

import contextlib
import re
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
def chromium_page(width: int, height: int, color_scheme: str = "light") -> Iterator[Any]:
    """A fresh page in a new headless Chromium with a `width` x `height` viewport, the operating
    system's colour scheme `color_scheme` ("light" or "dark"); closed afterwards."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
        context.set_default_timeout(60_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


# Every aria-valuenow the progress bar takes and the event log's text, kept in the tab's
# sessionStorage: the bar may pass a step between two polls of the test, and the page reloads into
# JupyterLab right after the last event.
RECORD_SPAWN_PROGRESS = """
document.addEventListener("DOMContentLoaded", function () {
  const bar = document.getElementById("progress-bar"), log = document.getElementById("progress-log");
  if (!bar || !log) return;
  new MutationObserver(function () {
    const values = JSON.parse(sessionStorage.getItem("afProgress") || "[]");
    values.push(Number(bar.getAttribute("aria-valuenow")));
    sessionStorage.setItem("afProgress", JSON.stringify(values));
  }).observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
  new MutationObserver(function () {
    sessionStorage.setItem("afLog", log.innerText);
    const times = JSON.parse(sessionStorage.getItem("afLogTimes") || "[]");
    times.push([Date.now(), log.lastElementChild ? log.lastElementChild.innerText : ""]);
    sessionStorage.setItem("afLogTimes", JSON.stringify(times));
  }).observe(log, { childList: true });
});
"""


def wait_for_text(page: Any, text: str, timeout_ms: int = 30_000) -> None:
    """Waits until the page's text holds `text`. The page may be between two documents (a form's
    submit navigates), when `document.body` is null for a moment: that counts as not yet."""
    page.wait_for_function(
        "text => document.body !== null && document.body.innerText.includes(text)", arg=text, timeout=timeout_ms
    )


def pick_jupyterlab_theme(page: Any, name: str) -> None:
    """Pick a theme ("JupyterLab Dark", "JupyterLab Light") from JupyterLab's Settings menu, as a user does."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{name}$")).click()
    light = "false" if "Dark" in name else "true"
    page.wait_for_selector(f"body[data-jp-theme-light='{light}']", state="attached")
    page.wait_for_timeout(500)  # the theme's CSS applies after the attribute


def in_each_look(page: Any, shots: Path, name: str, sizes: tuple[dict[str, int], ...], check: Any = None) -> None:
    """Screenshots `<name>-<light|dark>-<width>.png` (as tests/test_browser_panel.py names them) in
    JupyterLab's light and dark themes at each of `sizes`, after `check(page)` where given; back at the
    light theme and the first size afterwards."""
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        pick_jupyterlab_theme(page, theme)
        for size in sizes:
            page.set_viewport_size(size)
            page.wait_for_timeout(300)  # JupyterLab lays its panels out again on resize
            if check is not None:
                check(page)
            look = "dark" if "Dark" in theme else "light"
            page.screenshot(path=shots / f"{name}-{look}-{size['width']}.png")
    pick_jupyterlab_theme(page, "JupyterLab Light")
    page.set_viewport_size(sizes[0])


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


# The WCAG contrast ratio of an element's text against the background it is drawn on (the nearest
# ancestor with one; a translucent text colour blended over it), for checks of a colour theme.
CONTRAST = """
(element) => {
  const rgba = (text) => { const v = text.match(/[\\d.]+/g).map(Number); return v.length === 3 ? [...v, 1] : v; };
  let node = element, background = [255, 255, 255, 1];
  for (; node && node.nodeType === 1; node = node.parentElement) {
    const own = rgba(getComputedStyle(node).backgroundColor);
    if (own[3] > 0) { background = own; break; }
  }
  const [r, g, b, a] = rgba(getComputedStyle(element).color);
  const text = [r, g, b].map((c, i) => c * a + background[i] * (1 - a));
  const linear = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = (rgb) => rgb.map(linear).reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const [light, dark] = [luminance(text), luminance(background.slice(0, 3))].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}
"""


def contrast_of(locator: Any) -> float:
    """The WCAG contrast ratio of the first element `locator` finds (4.5 is the minimum for text)."""
    return float(locator.first.evaluate(CONTRAST))


# The texts of an ipywidget output's shown labels that their box cuts off (text wider than the box).
CUT_OFF_LABELS = """(root) => [...root.querySelectorAll('.widget-label, .widget-label-basic, label, button')]
  .filter(l => l.offsetParent && l.scrollWidth > l.clientWidth + 1).map(l => l.textContent)"""
# Shown parts of the output that reach past its right edge (out of sight in a narrow notebook).
SPILLED = """(root) => { const edge = root.getBoundingClientRect().right + 1;
  return [...root.querySelectorAll('.jupyter-widgets')]
    .filter(e => e.offsetParent && e.getBoundingClientRect().right > edge)
    .map(e => (e.textContent || e.className).trim().slice(0, 40)) }"""


def labels_whole_and_readable(output: Any) -> None:
    """Asserts that no shown label of the ipywidget in `output` (a locator) is cut off and that each
    one's text stands out from its background (WCAG contrast at least 4.5) in the current theme,
    and that nothing of it reaches past the output's right edge."""
    cut = output.evaluate(CUT_OFF_LABELS)
    assert cut == [], f"labels cut off: {cut}"
    spilled = output.evaluate(SPILLED)
    assert spilled == [], f"out of sight past the output's right edge: {spilled}"
    ratios = output.locator(".widget-label, .widget-label-basic, label").evaluate_all(
        f"(labels) => labels.filter(l => l.offsetParent && l.textContent.trim())"
        f".map(l => [l.textContent.trim(), ({CONTRAST.strip()})(l)])"
    )
    assert ratios, "no label shown"
    faint = [(text, round(ratio, 2)) for text, ratio in ratios if ratio < 4.5]
    assert faint == [], f"labels hard to read (contrast below 4.5): {faint}"
