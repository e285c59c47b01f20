"""The facility's examples as a new user meets them, in a real browser (Debian Chromium through
Playwright) against the hub that `af up` starts: the user guide linked from the hub's pages, the
examples in ~/examples on the first start, the "Facility examples" launcher card, the first-steps
notebook run to its progress bar and plot; and on a later start a user's edit kept while a new
upstream example arrives (nbgitpuller's merge, run by the server as the user in their home).

Screenshots of each step go to test-artifacts/browser-examples/.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import facility
from af.hub_content import example_notebooks, publish_examples
from facility.accounts import lookup, remove_account
from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.harness import RunningFacility

NEWCOMER = "examples-newcomer"
RETURNING = "examples-returning"

sync_api = sync_api_or_skip()
expect = sync_api.expect


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("browser-examples")


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    with chromium_page(1440, 900) as new_page:
        yield new_page


def _fresh_user(embedded: RunningFacility, name: str) -> Iterator[str]:
    # A first login: no account, home or JupyterLab workspace left by an earlier run.
    remove_account(name, facility.load(embedded.facility_file).auth.unix_accounts)
    yield name
    embedded.login(name).stop_server()


@pytest.fixture
def newcomer(embedded: RunningFacility) -> Iterator[str]:
    yield from _fresh_user(embedded, NEWCOMER)


@pytest.fixture
def returning(embedded: RunningFacility) -> Iterator[str]:
    yield from _fresh_user(embedded, RETURNING)


def _home(embedded: RunningFacility, user: str) -> Path:
    account = lookup(user, facility.load(embedded.facility_file).auth.unix_accounts)
    assert account is not None, f"{user} has no Unix account"
    return account.home


def _log_in(page: sync_api.Page, embedded: RunningFacility, user: str) -> None:
    log_in(page, embedded.url, user, embedded.password_of(user))


def _start_server(page: sync_api.Page, embedded: RunningFacility, user: str) -> None:
    """The spawn form (local backend, 1 core, 2 GB), then the wait until JupyterLab is up."""
    if "/hub/spawn" not in page.url:
        page.goto(f"{embedded.url}/hub/spawn")
    page.wait_for_selector(".af-spawn-form")
    page.fill("#af-local-cores", "1")
    page.fill("#af-local-memory_gb", "2")
    page.click('form button[type="submit"]')
    # The server pulls the examples as it starts (hub_config.examples_pull); the hub opens JupyterLab.
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=180_000)
    page.wait_for_selector("#jp-main-dock-panel")


def test_newcomer_finds_and_runs_the_examples(embedded: RunningFacility, newcomer: str, page, shots: Path) -> None:
    # 1. The spawn page links the user guide.
    _log_in(page, embedded, newcomer)
    page.wait_for_selector(".af-spawn-form")
    expect(page.locator("#af-user-guide-link")).to_be_visible()
    expect(page.locator(".navbar").get_by_role("link", name="User guide")).to_be_visible()
    page.screenshot(path=shots / "01-spawn-page-guide-link.png")

    # 2. First start: JupyterLab shows the launcher card and ~/examples in the file browser.
    _start_server(page, embedded, newcomer)
    card = page.locator('.jp-LauncherCard[data-category="Analysis facility"]')
    expect(card).to_contain_text("Facility examples")
    listing = page.locator(".jp-DirListing-content")
    expect(listing.get_by_text("examples", exact=True)).to_be_visible()
    page.screenshot(path=shots / "02-lab-launcher-card.png")
    home = _home(embedded, newcomer)
    assert sorted(p.name for p in (home / "examples").glob("*.ipynb")) == [p.name for p in example_notebooks()]
    assert (home / "examples").stat().st_uid == (home.stat().st_uid)  # cloned as the user, not as root

    # 3. The card opens the first-steps notebook and shows the examples folder.
    card.click()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Cell").first).to_contain_text("First steps on the analysis facility")
    expect(listing.get_by_text("ttbar_analysis.ipynb")).to_be_visible()
    expect(page.locator(".jp-FileBrowser .jp-BreadCrumbs")).to_contain_text("examples")
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    page.screenshot(path=shots / "03-first-steps-open.png")

    # 4. Run it all: a cluster, one file through the cache, a progress bar, a plot.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    cells = notebook.locator(".jp-CodeCell")
    try:
        expect(cells.nth(0).locator(".jp-OutputArea-output")).to_contain_text("Dask dashboard:", timeout=180_000)
        expect(cells.nth(1).locator(".jp-OutputArea-output")).to_contain_text("events, e.g. branches", timeout=60_000)
        progress = cells.nth(2).locator(".widget-hprogress, .jupyter-widgets .progress").first
        expect(progress).to_be_visible(timeout=120_000)
        expect(cells.nth(2).locator(".jp-OutputArea-output")).to_contain_text("Finished", timeout=120_000)
        image = cells.nth(3).locator(".jp-RenderedImage img")
        expect(image).to_be_visible(timeout=120_000)
    except AssertionError:
        page.screenshot(path=shots / "04-run-FAILED.png", full_page=True)
        raise
    expect(cells.nth(3).locator(".jp-OutputArea-output").last).to_contain_text("jets from")
    cells.nth(2).scroll_into_view_if_needed()
    page.screenshot(path=shots / "04-first-steps-progress-and-plot.png")
    image.scroll_into_view_if_needed()
    page.screenshot(path=shots / "05-first-steps-plot.png")
    assert "read through the cache: root://" in cells.nth(1).text_content()

    # 5. The home page links the guide, which the hub shows as a page (not raw markdown).
    page.goto(f"{embedded.url}/hub/home")
    page.locator("#af-user-guide-link").click()
    page.wait_for_url(re.compile(r"/hub/user-guide$"))
    expect(page.locator("h1")).to_have_text("User guide: analysing data on the facility")
    expect(page.locator(".af-guide table").first).to_be_visible()
    expect(page.locator(".af-guide")).to_contain_text("~/examples")
    assert "## " not in page.locator(".af-guide").inner_text()
    page.screenshot(path=shots / "06-user-guide.png")


def _first_cell_source(notebook: Path) -> str:
    return "".join(json.loads(notebook.read_text())["cells"][0]["source"])


def test_user_edit_survives_and_new_example_arrives(
    embedded: RunningFacility, returning: str, page, shots: Path, tmp_path: Path
) -> None:
    _log_in(page, embedded, returning)
    _start_server(page, embedded, returning)
    examples = _home(embedded, returning) / "examples"
    assert (examples / "first_steps.ipynb").is_file()

    # 1. The user edits the first cell of an example and saves it (JupyterLab's save: the contents API).
    session = embedded.login(returning)
    token = session.token("edit an example")
    api = f"{embedded.url}/user/{returning}/api/contents/examples/first_steps.ipynb"
    headers = {"Authorization": f"token {token}"}
    model = requests.get(api, headers=headers, timeout=30).json()
    model["content"]["cells"][0]["source"] = "# My own first steps\n\nNotes of my own."
    saved = {"type": "notebook", "format": "json", "content": model["content"]}
    reply = requests.put(api, headers=headers, json=saved, timeout=30)
    assert reply.status_code == 200, reply.text

    # 2. Upstream, the facility changes that same cell and adds an example (as `af up` after an update).
    upstream = tmp_path / "notebooks"
    upstream.mkdir()
    for notebook in example_notebooks():
        shutil.copy(notebook, upstream)
    changed = json.loads((upstream / "first_steps.ipynb").read_text())
    changed["cells"][0]["source"] = ["# First steps, revised upstream\n"]
    (upstream / "first_steps.ipynb").write_text(json.dumps(changed, indent=1))
    new = json.loads((upstream / "first_steps.ipynb").read_text())
    new["cells"] = [{"cell_type": "markdown", "id": "new-0", "metadata": {}, "source": ["# A new example\n"]}]
    (upstream / "new_example.ipynb").write_text(json.dumps(new, indent=1))
    try:
        assert publish_examples(embedded.state_dir, upstream) is True

        # 3. The next server start pulls: the new example is there, the user's edit is kept.
        session.stop_server()
        _start_server(page, embedded, returning)
        listing = page.locator(".jp-DirListing-content")
        listing.get_by_text("examples", exact=True).dblclick()
        expect(listing.get_by_text("new_example.ipynb")).to_be_visible()
        page.screenshot(path=shots / "07-new-example-after-restart.png")
        assert (examples / "new_example.ipynb").is_file()
        assert _first_cell_source(examples / "first_steps.ipynb") == "# My own first steps\n\nNotes of my own."
        # The rest of the upstream notebook still arrives unchanged where the user did not edit.
        assert json.loads((examples / "ttbar_analysis.ipynb").read_text()) == json.loads(
            (upstream / "ttbar_analysis.ipynb").read_text()
        )
    finally:
        publish_examples(embedded.state_dir)  # the project's examples again, for other tests
