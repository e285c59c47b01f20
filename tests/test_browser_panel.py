"""The JupyterLab Dask panel and the notebook widget as a researcher sees them, in Chromium through
the hub of the embedded facility: JupyterLab's own controls and theme (light and dark, 1440x900 and
a narrow window), values checked in the browser before anything is sent, one message in plain
words, a named cluster with its size, memory, age and idle timeout, dashboard plots as tabs that
say so when the cluster stops, a confirmation before Stop, the widget's full labels and said-out-loud
clamping, and a calm message when the notebook server is gone.

Screenshots go to test-artifacts/panel/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import facility
from facility.accounts import remove_account
from tests.browser import (
    chromium_page,
    emptied_artifacts,
    in_each_look,
    labels_whole_and_readable,
    log_in,
    pick_jupyterlab_theme,
    sync_api_or_skip,
)
from tests.harness import HubSession, RunningFacility

USER = "panel-user"
WIDE = {"width": 1440, "height": 900}
NARROW = {"width": 760, "height": 900}
LOOKS = (WIDE, NARROW)  # in_each_look: light and dark at each

sync_api = sync_api_or_skip()
expect = sync_api.expect


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("panel")


@pytest.fixture(scope="module")
def hub(embedded: RunningFacility) -> Iterator[HubSession]:
    """panel-user with a running notebook server (started through the hub's API, not its form)."""
    remove_account(USER, facility.load(embedded.facility_file).auth.unix_accounts)  # no old workspace
    session = embedded.login(USER)
    reply = session.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code in (200, 302), reply.status_code
    session.wait_ready(timeout=120)
    yield session
    session.stop_server()


@pytest.fixture(scope="module")
def page(embedded: RunningFacility, hub: HubSession) -> Iterator[Any]:
    with chromium_page(WIDE["width"], WIDE["height"]) as new_page:
        log_in(new_page, embedded.url, USER, embedded.password_of(USER))
        new_page.goto(f"{embedded.url}/user/{USER}/lab")
        new_page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        new_page.click('.jp-SideBar [data-id="af-dask-panel"]')
        yield new_page


def _shoot(page: Any, shots: Path, name: str) -> None:
    """One screenshot per theme and width: `<name>-<light|dark>-<width>.png`."""
    light = page.evaluate("document.body.dataset.jpThemeLight") == "true"
    width = page.viewport_size["width"]
    page.screenshot(path=shots / f"{name}-{'light' if light else 'dark'}-{width}.png")


def test_form_uses_lab_controls_and_checks_values_before_sending(page, shots: Path) -> None:
    panel = page.locator("#af-dask-panel")
    backend = panel.locator("select.af-dask-backend")
    expect(backend).to_have_class(re.compile(r"jp-mod-styled"))
    # The backend named once: not "This machine (this machine)".
    expect(backend.locator("option")).to_have_text("This machine")
    expect(panel.locator(".af-dask-create")).to_have_class(re.compile(r"jp-mod-accept"))
    expect(panel.locator(".af-dask-empty")).to_be_visible(timeout=60_000)
    # Adaptive's fewest/most only when Adaptive is on, instead of Workers.
    expect(panel.locator('input[name="workers"]')).to_be_visible()
    expect(panel.locator('input[name="minimum"]')).to_be_hidden()
    in_each_look(page, shots, "01-panel", LOOKS, lambda _: expect(panel.locator(".af-dask-empty")).to_be_visible())
    panel.locator(".af-dask-adaptive .jp-switch").click()
    expect(panel.locator('input[name="minimum"]')).to_be_visible()
    expect(panel.locator('input[name="maximum"]')).to_be_visible()
    expect(panel.locator('input[name="workers"]')).to_be_hidden()
    _shoot(page, shots, "02-panel-adaptive")
    panel.locator(".af-dask-adaptive .jp-switch").click()
    expect(panel.locator('input[name="minimum"]')).to_be_hidden()

    # A value beyond the limit is refused in the browser, in words, and nothing is sent.
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and "/af-dask/" in r.url else None)
    panel.locator('input[name="worker_memory_gb"]').fill("16")
    message = panel.locator(".af-dask-message")
    expect(message).to_have_text(re.compile(r"^Worker memory can be at most 4 GB on This machine\."))
    expect(panel.locator(".af-dask-create")).to_be_disabled()
    panel.locator('input[name="worker_cores"]').fill("0")
    # One current message, not a pile: the first problem of the form.
    expect(message).to_have_count(1)
    expect(panel.locator('input[name="worker_cores"]')).to_have_attribute("aria-invalid", "true")
    in_each_look(page, shots, "03-value-refused", LOOKS, lambda _: expect(message).to_be_visible())
    panel.locator('input[name="worker_cores"]').fill("1")
    panel.locator('input[name="worker_memory_gb"]').fill("1")
    expect(panel.locator(".af-dask-create")).to_be_enabled()
    expect(message).to_be_hidden()
    assert posted == [], posted


def test_named_cluster_shows_size_memory_age_and_idle_timeout(page, shots: Path) -> None:
    panel = page.locator("#af-dask-panel")
    panel.locator('input[name="cluster_name"]').fill("ttbar fit")
    panel.locator('input[name="workers"]').fill("1")
    panel.locator(".af-dask-create").click()
    card = panel.locator(".af-dask-cluster")
    expect(card.locator(".af-dask-name")).to_have_text("ttbar fit", timeout=120_000)
    expect(card.locator(".af-dask-workers")).to_have_text("1 worker, 1 core", timeout=120_000)
    expect(card.locator(".af-dask-memory")).to_have_text("1 GB each")
    expect(card.locator(".af-dask-idle")).to_have_text(re.compile(r"^stops after \d+ minutes? idle$"))
    expect(card.locator(".af-dask-age")).to_have_text(re.compile(r"minute"))
    expect(card.locator(".af-dask-where")).to_have_text("This machine")
    expect(panel.locator(".af-dask-message")).to_have_text(re.compile(r"^Cluster ttbar fit runs on This machine\."))
    in_each_look(page, shots, "04-cluster", LOOKS, lambda _: expect(card.locator(".af-dask-idle")).to_be_visible())


def test_dashboard_plots_open_as_tabs(page, shots: Path) -> None:
    card = page.locator("#af-dask-panel .af-dask-cluster")
    name = card.get_attribute("data-name")
    for plot in ("Task Stream", "Progress"):
        card.locator(".af-dask-dashboard-button").click()
        menu = page.locator(".af-dask-plots-menu")
        expect(menu.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Workers Memory$"))).to_be_visible()
        menu.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{plot}$")).click()
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text=f"{plot} · ttbar fit")
        expect(tab).to_be_visible()
    frames = page.locator(".af-dask-dashboard iframe")
    expect(frames).to_have_count(2)
    slug = "individual-task-stream"
    expect(frames.first).to_have_attribute(
        "src", re.compile(rf"/services/dask-dashboards/local/clusters/{name}/{slug}")
    )
    frame = frames.first.element_handle().content_frame()
    frame.wait_for_load_state("load")
    page.wait_for_timeout(2000)  # let bokeh draw
    _shoot(page, shots, "05-dashboard-tabs")


def test_widget_labels_are_whole_and_clamping_is_said(page, shots: Path) -> None:
    launcher = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
    if not launcher.is_visible():
        page.locator(".lm-TabBar-tabLabel", has_text="Launcher").click()
    launcher.click()
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-NotebookPanel:visible .jp-Cell .cm-content").first.click()
    page.keyboard.insert_text("from dask_backends.widget import ClusterWidget\nwidget = ClusterWidget()\nwidget")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel:visible .jp-Cell").first.locator(".jp-OutputArea-output").first
    expect(output.locator("select").first).to_contain_text("This machine", timeout=60_000)
    expect(output.locator("select").first.locator("option")).to_have_text("This machine")
    workers = output.locator(".widget-text input").nth(3)  # name, cores, memory, workers
    workers.fill("10")
    workers.press("Enter")
    expect(output).to_contain_text("10 asked; This machine allows at most 4, so 4 it is")
    expect(workers).to_have_value("4")

    # No label is cut off, nothing spills out of sight and each label reads against its background,
    # in both themes and at both widths (at 760 px the notebook shares the main area with the
    # panel and two plot tabs: about 200 px).
    def whole(_: Any) -> None:
        output.scroll_into_view_if_needed()
        labels_whole_and_readable(output)

    in_each_look(page, shots, "06-widget", LOOKS, whole)
    page.set_viewport_size(WIDE)


def _card_follows_the_theme(page: Any) -> None:
    """The panel's colours come from the theme: the cluster card is dark in the dark theme, light in the light one."""
    background = page.evaluate(
        "getComputedStyle(document.querySelector('#af-dask-panel .af-dask-cluster')).backgroundColor"
    )
    red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
    dark = page.evaluate("document.body.dataset.jpThemeLight") == "false"
    assert (red + green + blue < 3 * 100) == dark, (background, "dark" if dark else "light")


def test_dark_theme_and_narrow_window(page, shots: Path) -> None:
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="Task Stream · ttbar fit").click()
    in_each_look(page, shots, "07-panel", LOOKS, _card_follows_the_theme)
    page.locator('#af-dask-panel input[name="worker_memory_gb"]').fill("16")
    message = page.locator("#af-dask-panel .af-dask-message")
    in_each_look(page, shots, "08-value-refused", LOOKS, lambda _: expect(message).to_be_visible())
    page.locator('#af-dask-panel input[name="worker_memory_gb"]').fill("1")


def test_stop_asks_first_and_dashboard_tabs_say_the_cluster_stopped(page, shots: Path) -> None:
    panel = page.locator("#af-dask-panel")
    card = panel.locator(".af-dask-cluster")
    card.locator(".af-dask-stop").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Stop cluster ttbar fit?")
    _shoot(page, shots, "09-stop-confirm")
    dialog.get_by_role("button", name="Keep running").click()
    expect(dialog).to_have_count(0)
    expect(card).to_have_count(1)

    card.locator(".af-dask-stop").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Stop cluster").click()
    expect(panel.locator(".af-dask-empty")).to_be_visible(timeout=60_000)
    expect(panel.locator(".af-dask-message")).to_have_text(re.compile(r"^Cluster ttbar fit stopped\."))
    # Both plot tabs (side by side) say so in place of their plots, and can be closed from there.
    notes = page.locator(".af-dask-dashboard-note:visible")
    expect(notes).to_have_count(2)
    for index in (0, 1):
        expect(notes.nth(index)).to_contain_text("Cluster ttbar fit has stopped")
    expect(page.locator(".lm-TabBar-tabLabel", has_text="(stopped)")).to_have_count(2)
    in_each_look(page, shots, "10-dashboard-stopped", LOOKS, lambda _: expect(notes.first).to_be_visible())
    notes.first.get_by_role("button", name="Close this tab").click()
    expect(page.locator(".lm-TabBar-tabLabel", has_text="(stopped)")).to_have_count(1)


def _message_once_the_server_stops(page: Any, hub: HubSession) -> Any:
    hub.stop_server()
    message = page.locator("#af-dask-panel .af-dask-message")
    expect(message).to_contain_text("Your notebook server has stopped", timeout=60_000)
    text = message.text_content()
    assert "424" not in text and "<" not in text and "html" not in text.lower(), text
    return message


def test_calm_message_when_the_server_is_gone(page, embedded: RunningFacility, hub: HubSession, shots: Path) -> None:
    # JupyterLab's own "Server unavailable" dialog covers its Settings menu once the server is gone,
    # and a theme cannot be saved without the server: each theme is picked while the server runs,
    # then the server is stopped (and started again in between).
    for look, theme in (("light", "JupyterLab Light"), ("dark", "JupyterLab Dark")):
        if look == "dark":
            reply = hub.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
            assert reply.status_code in (200, 302), reply.status_code
            hub.wait_ready(timeout=120)
            page.goto(f"{embedded.url}/user/{USER}/lab?reset")  # not the notebook of the kernel that went
            page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
            page.click('.jp-SideBar [data-id="af-dask-panel"]')
        pick_jupyterlab_theme(page, theme)
        message = _message_once_the_server_stops(page, hub)
        for size in LOOKS:
            page.set_viewport_size(size)
            page.wait_for_timeout(300)
            expect(message).to_be_visible()
            page.screenshot(path=shots / f"11-server-gone-{look}-{size['width']}.png")
        page.set_viewport_size(WIDE)
