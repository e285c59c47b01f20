"""The whole user path in a real browser (Debian Chromium driven by Playwright) against the hub
that `af up` starts: log in, fill the spawn form, watch the progress page, reach JupyterLab, open
the Dask panel, create a cluster on the local backend, see its workers, open its dashboard,
insert the connect code into a notebook and run it, stop the cluster.

Screenshots of each step go to test-artifacts/browser/; those in JupyterLab in its light and dark
themes at 1440 and 760 px (`<name>-<light|dark>-<width>.png`; the hub's own pages in each look are
tests/test_browser_spawnpage.py's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import facility
from facility.accounts import remove_account
from tests.browser import (
    chromium_page,
    emptied_artifacts,
    in_each_look,
    labels_whole_and_readable,
    log_in,
    sync_api_or_skip,
)
from tests.harness import RunningFacility

USER = "browser-user"
WIDE = {"width": 1440, "height": 900}
LOOKS = (WIDE, {"width": 760, "height": 900})  # in_each_look: light and dark at each

sync_api = sync_api_or_skip()


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("browser")


@pytest.fixture(scope="module")
def page() -> Iterator[sync_api.Page]:
    with chromium_page(WIDE["width"], WIDE["height"]) as new_page:
        yield new_page


@pytest.fixture
def lab_user(embedded: RunningFacility) -> Iterator[str]:
    """A user of the embedded facility whose notebook server is stopped after the test."""
    # A first login: no JupyterLab workspace (open notebook, open panel) left in the account's
    # home by an earlier run of this test.
    remove_account(USER, facility.load(embedded.facility_file).auth.unix_accounts)
    yield USER
    embedded.login(USER).stop_server()


def test_user_manages_a_dask_cluster_from_jupyterlab(embedded: RunningFacility, lab_user, page, shots: Path) -> None:
    expect = sync_api.expect

    # 1. Log in.
    log_in(page, embedded.url, USER, embedded.password_of(USER))

    # 2. The spawn form: backend cards with descriptions and limits, only applicable fields.
    page.wait_for_selector(".af-spawn-form")
    card = page.locator('.af-backend[data-backend="local"]')
    expect(card).to_contain_text("This machine")
    expect(card).to_contain_text("up to 2 cores, 8 GB")
    expect(card).to_contain_text("Dask: up to 4 workers")
    assert page.locator('input[name="gpus"]').count() == 0  # no backend here has GPUs
    page.fill("#af-local-cores", "1")
    page.fill("#af-local-memory_gb", "2")
    page.screenshot(path=shots / "01-spawn-form.png", full_page=True)
    page.click('form button[type="submit"]')

    # 3. The progress page shows the backend's messages while the server starts.
    page.wait_for_url(re.compile(r"/hub/spawn-pending/"))
    page.wait_for_function(
        "document.querySelector('#progress-log') && "
        "document.querySelector('#progress-log').textContent.includes('Request checked')"
    )
    log = page.locator("#progress-log").text_content()
    page.evaluate("document.querySelector('#progress-details').open = true")
    page.screenshot(path=shots / "02-spawn-progress.png")
    assert "Request checked: This machine, 1 core, 2 GB memory" in log

    # 4. JupyterLab, with the Dask panel in the left sidebar.
    page.wait_for_url(re.compile(rf"/user/{USER}/lab"), timeout=120_000)
    page.wait_for_selector("#jp-main-dock-panel")
    # One launcher (af-dask-lab opens it once the layout is restored; JupyterLab's own routing,
    # which ends later, then finds the main area taken and opens none).
    page.wait_for_selector(".jp-Launcher", timeout=60_000)
    page.wait_for_timeout(2_000)
    expect(page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="Launcher")).to_have_count(1)
    page.click('.jp-SideBar [data-id="af-dask-panel"]')
    panel = page.locator("#af-dask-panel")
    expect(panel.locator("select.af-dask-backend")).to_contain_text("This machine")
    expect(panel.locator('input[name="worker_cores"]')).to_have_attribute("max", "2")
    empty = panel.locator(".af-dask-empty")
    expect(empty).to_be_visible()
    in_each_look(page, shots, "03-lab-dask-panel", LOOKS, lambda _: expect(empty).to_be_visible())

    # 5. A value beyond the backend's limit: refused in the browser, in plain words, nothing sent.
    panel.locator('input[name="worker_cores"]').fill("99")
    message = panel.locator(".af-dask-message")
    expect(message).to_contain_text("Worker cores can be at most 2 cores on This machine.")
    expect(panel.locator(".af-dask-create")).to_be_disabled()
    in_each_look(page, shots, "04a-value-refused", LOOKS, lambda _: expect(message).to_be_visible())
    panel.locator('input[name="worker_cores"]').fill("1")

    # 6. Create a cluster with one worker and see the worker arrive.
    panel.locator('input[name="worker_memory_gb"]').fill("1")
    panel.locator('input[name="workers"]').fill("1")
    panel.locator(".af-dask-create").click()
    cluster = panel.locator(".af-dask-cluster")
    expect(cluster.locator(".af-dask-workers")).to_have_text(re.compile(r"^1 worker, 1 core$"), timeout=120_000)
    name = cluster.get_attribute("data-name")
    workers = cluster.locator(".af-dask-workers")
    in_each_look(page, shots, "04-cluster-running", LOOKS, lambda _: expect(workers).to_be_visible())

    # 7. Its dashboard, in a JupyterLab tab (the first entry of the Dashboard menu).
    cluster.locator(".af-dask-dashboard-button").click()
    page.locator(".af-dask-plots-menu .lm-Menu-itemLabel", has_text=re.compile(r"^Dashboard$")).click()
    frame_element = page.locator(".af-dask-dashboard iframe")
    # Through the hub's dashboard service, which adds the owner's key (hub_config/dashboard_service.py).
    through_service = re.compile(rf"/services/dask-dashboards/local/clusters/{name}/status")
    expect(frame_element).to_have_attribute("src", through_service)
    frame = frame_element.element_handle().content_frame()
    frame.wait_for_load_state("load")
    assert "Dask" in frame.title()
    page.wait_for_timeout(2000)  # let bokeh draw its plots
    in_each_look(page, shots, "05-dashboard", LOOKS, lambda _: expect(frame_element).to_be_visible())

    # 8. A notebook: insert the connect code from the panel and run it.
    page.click('.jp-LauncherCard[data-category="Notebook"]')
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
    # A cell run before the kernel is connected is dropped: wait for it, as a user would.
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    cluster.locator(".af-dask-insert").click()
    cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
    expect(cells.last).to_contain_text(f"gateway('local').connect('{name}')")
    cells.last.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea-output").first
    try:
        expect(output).to_contain_text("GatewayCluster", timeout=120_000)
    except AssertionError:
        page.screenshot(path=shots / "06-notebook-FAILED.png")
        raise AssertionError(f"connect cell output: {output.text_content(timeout=5000)!r}") from None
    expect(output).to_contain_text(name)
    in_each_look(page, shots, "06-notebook-connected", LOOKS, lambda _: expect(output).to_be_visible())

    # 8b. The same choices as an ipywidget in the notebook (the cell after the connect code; the
    # theme menu took the focus from its editor).
    page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(2).locator(".cm-content").click()
    page.keyboard.insert_text("from dask_backends.widget import ClusterWidget\nClusterWidget()")
    page.keyboard.press("Shift+Enter")
    widget = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(2).locator(".jp-OutputArea-output").first
    expect(widget.locator("select").first).to_contain_text("This machine", timeout=60_000)
    expect(widget.get_by_role("button", name="Create")).to_be_visible()
    expect(widget).to_contain_text("Workers 0 to 4")

    # Its labels whole (not cut off), all of it in sight and readable, in both themes at 1440 px and at
    # 760 px, where the notebook shares the main area with the panel and the dashboard.
    def whole(_: object) -> None:
        widget.scroll_into_view_if_needed()
        labels_whole_and_readable(widget)

    in_each_look(page, shots, "06b-notebook-widget", LOOKS, whole)
    page.set_viewport_size(WIDE)

    # 9. Stop it from the panel, after saying yes: it leaves the gateway's list.
    cluster.locator(".af-dask-stop").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Stop cluster").click()
    expect(empty).to_be_visible(timeout=60_000)
    in_each_look(page, shots, "07-cluster-stopped", LOOKS, lambda _: expect(empty).to_be_visible())


def test_spawn_form_shows_only_the_chosen_backends_fields(page, shots: Path) -> None:
    """The form rendered from the four-backend example: picking a backend shows its own fields only."""
    import facility
    from hub_config.spawner import render_form

    fac = facility.load(Path(__file__).resolve().parent.parent / "examples" / "site-facility.yaml")
    page.goto("about:blank")  # independent of where the previous test left the shared page
    page.set_content(f"<form id='spawn_form'>{render_form(fac, list(fac.backends))}</form>")
    visible = page.locator(".af-options fieldset:visible")
    expect = sync_api.expect

    expect(visible).to_have_count(1)
    expect(visible).to_have_attribute("data-backend", "login")
    assert page.locator(".af-options input[name='gpus']:visible").count() == 0

    page.click('.af-backend[data-backend="hpc"]')
    expect(visible).to_have_attribute("data-backend", "hpc")
    for field in ("gpus", "walltime_hours"):
        expect(visible.locator(f"input[name='{field}']")).to_be_visible()
    expect(visible.locator("select[name='queue']")).to_be_visible()
    expect(page.locator('.af-backend[data-backend="hpc"]')).to_contain_text("GPUs (a100, h100)")
    page.screenshot(path=shots / "00-spawn-form-hpc.png", full_page=True)

    page.click('.af-backend[data-backend="cloud"]')
    expect(visible).to_have_attribute("data-backend", "cloud")
    assert visible.locator("input[name='gpus'], input[name='walltime_hours'], select[name='queue']").count() == 0
    # Hidden fieldsets are disabled, so only the chosen backend's values are posted.
    posted = page.evaluate("[...new FormData(document.querySelector('form')).keys()]")
    assert sorted(posted) == ["backend", "cores", "image", "memory_gb"]
