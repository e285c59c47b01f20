"""The form's memory is enforced on the local backend (issue 18), on the real facility.

maud's server gets 1 GB. Its processes carry RLIMIT_DATA of 1 GiB and sit in a memory cgroup of
1 GiB (this host: cgroup v1, writable by the hub as root); a cell asking for 1.5 GB at once gets
a MemoryError that names the limit, and the kernel lives on; two processes of 700 MB each (each
under the process limit) pass the cgroup's limit together and the kernel's OOM killer stops one;
when that is the notebook's kernel, the server extension says the memory limit stopped it
(GET /af-dask/kernels/<id>/last-stop, af_dask_lab.kernel_stops), JupyterLab shows the facility's
dialog naming the limit instead of its own "appears to have died", and the kernel that starts again
says so too. A kernel that kills itself keeps JupyterLab's dialog. jupyter-resource-usage
reports the limit, and JupyterLab shows it in its status bar and the MemoryError in the notebook
(a real browser, light and dark theme, 1440 and 760 px wide; screenshots in
test-artifacts/memory-limit/). The cgroup goes with the server.
JupyterLab's page asks the server for no build check and no news (hub_config.singleuser).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

import facility
from backends.local import memory_limit
from facility.accounts import remove_account
from tests.browser import (
    chromium_page,
    emptied_artifacts,
    in_each_look,
    log_in,
    pick_jupyterlab_theme,
    sync_api_or_skip,
)
from tests.harness import HubSession, RunningFacility, execute_in_kernel

USER = "maud"
GIB = 1024**3
WIDE, NARROW = {"width": 1440, "height": 900}, {"width": 760, "height": 900}
# A cell whose kernel the cgroup's OOM killer stops: the kernel holds 700 MB and a process it starts
# asks for 500 MB more, together past 1 GB; the killer stops the largest, the kernel.
KERNEL_PAST_THE_LIMIT = (
    "held = bytearray(700 * 1024**2)\n"
    "import subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', 'b = bytearray(500 * 1024**2); import time; time.sleep(3)'])"
)
# Each dialog shown or closed, with the page's clock in ms (its title is read later: React renders it).
RECORD_DIALOGS = """() => {
  window.afDialogs = [];
  const note = (change, node) => {
    if (node.classList && node.classList.contains("jp-Dialog")) {
      window.afDialogs.push([change, node, performance.now()]);
    }
  };
  new MutationObserver(records => records.forEach(record => {
    record.addedNodes.forEach(node => note("shown", node));
    record.removedNodes.forEach(node => note("closed", node));
  })).observe(document.body, { childList: true });
}"""
KERNEL_KILLS_ITSELF = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


@pytest.fixture(scope="module")
def maud(embedded: RunningFacility) -> Iterator[HubSession]:
    # A first login: no JupyterLab workspace left in the account's home by an earlier run.
    remove_account(USER, facility.load(embedded.facility_file).auth.unix_accounts)
    session = embedded.login(USER)
    reply = session.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "1", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    session.wait_ready()
    yield session
    session.stop_server()


def run(embedded: RunningFacility, session: HubSession, code: str) -> str:
    return execute_in_kernel(f"{embedded.url}/user/{USER}/", session.token(), code)


def test_server_processes_carry_the_limit(embedded: RunningFacility, maud: HubSession) -> None:
    assert memory_limit.mechanism() == "cgroup v1"  # this host; 'rlimit' alone where cgroups are not writable
    code = (
        "import json, resource\n"
        "lines = [line.split(':') for line in open('/proc/self/cgroup').read().splitlines()]\n"
        "cgroup = [path for _, names, path in lines if names == 'memory']\n"
        "rlimit = resource.getrlimit(resource.RLIMIT_DATA)[0]\n"
        "print(json.dumps({'rlimit': rlimit, 'cgroup': cgroup[0]}))"
    )
    seen = json.loads(run(embedded, maud, code))
    assert seen["rlimit"] == GIB
    assert seen["cgroup"].startswith(f"/{memory_limit.PARENT}/") and seen["cgroup"].endswith(f"-{USER}")
    # Read here (as root): the user may pass through the cgroup folders (0711) but not list them.
    assert int(Path(f"/sys/fs/cgroup/memory{seen['cgroup']}/memory.limit_in_bytes").read_text()) == GIB


def test_kernels_read_their_cgroups_oom_kills(embedded: RunningFacility, maud: HubSession) -> None:
    """As the user: the cgroup named in $AF_MEMORY_CGROUP and its count of OOM kills, which a kernel
    started again after one reads (backends.local.memory_message)."""
    code = (
        "import json, os, sys\n"
        "oom_kills = sys.modules['_af_memory_message'].oom_kills  # loaded by the kernel's startup file\n"
        "cgroup = os.environ.get('AF_MEMORY_CGROUP')\n"
        "print(json.dumps({'cgroup': cgroup, 'kills': oom_kills(cgroup)}))"
    )
    seen = json.loads(run(embedded, maud, code))
    assert seen["cgroup"] == str(memory_limit.cgroup_path(str(embedded.state_dir), USER)), seen
    assert isinstance(seen["kills"], int), seen


def test_one_allocation_past_the_limit_is_a_memory_error(embedded: RunningFacility, maud: HubSession) -> None:
    with pytest.raises(AssertionError, match="MemoryError: this notebook server may use at most 1 GB of memory"):
        run(embedded, maud, "block = bytearray(1536 * 1024**2)")
    assert run(embedded, maud, "print('alive')").strip() == "alive"  # the kernel is not lost


def test_processes_together_past_the_limit_are_stopped(embedded: RunningFacility, maud: HubSession) -> None:
    code = (
        "import subprocess, sys\n"
        "hold = 'b = bytearray(700 * 1024**2); import time; time.sleep(20)'\n"
        "children = [subprocess.Popen([sys.executable, '-c', hold]) for _ in range(2)]\n"
        "print(sorted(c.wait() for c in children))"
    )
    codes = run(embedded, maud, code).strip()
    assert codes.startswith("[-9"), f"expected one child killed by the cgroup's OOM killer, exit codes {codes}"


def kernel_dies(embedded: RunningFacility, session: HubSession, code: str, timeout: float = 120) -> str:
    """Run `code` in a new kernel until jupyter-server says the kernel died and restarts it (the
    iopub status 'restarting' JupyterLab turns into 'autorestarting'); the kernel's id."""
    server = f"{embedded.url}/user/{USER}/"
    headers = {"Authorization": f"token {session.token()}"}
    reply = requests.post(f"{server}api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    reply.raise_for_status()
    kernel_id = reply.json()["id"]

    async def run_until_restart() -> None:
        ws_url = server.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, request_timeout=timeout))
        header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex}
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}}
        conn.write_message(
            json.dumps(
                {
                    "header": {**header, "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        while True:
            raw = await conn.read_message()
            assert raw is not None, "the kernel's websocket closed before it restarted"
            msg = json.loads(raw)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "restarting":
                conn.close()
                return

    try:
        IOLoop().run_sync(run_until_restart, timeout=timeout)
    except BaseException:
        requests.delete(f"{server}api/kernels/{kernel_id}", headers=headers, timeout=30)
        raise
    return kernel_id


def last_stop(embedded: RunningFacility, session: HubSession, kernel_id: str) -> dict[str, object]:
    server = f"{embedded.url}/user/{USER}/"
    headers = {"Authorization": f"token {session.token()}"}
    try:
        reply = requests.get(f"{server}af-dask/kernels/{kernel_id}/last-stop", headers=headers, timeout=30)
        reply.raise_for_status()
        return reply.json()
    finally:
        requests.delete(f"{server}api/kernels/{kernel_id}", headers=headers, timeout=30)


def test_server_says_the_memory_limit_stopped_the_kernel(embedded: RunningFacility, maud: HubSession) -> None:
    said = last_stop(embedded, maud, kernel_dies(embedded, maud, KERNEL_PAST_THE_LIMIT))
    assert said["memory_limit"] is True, said
    assert said["limit"] == "1 GB"
    assert "this notebook server may use at most 1 GB of memory" in str(said["message"])


def test_server_says_nothing_of_memory_for_a_kernel_that_killed_itself(
    embedded: RunningFacility, maud: HubSession
) -> None:
    """SIGKILL, as the OOM killer sends it, but the cgroup counted no OOM kill."""
    said = last_stop(embedded, maud, kernel_dies(embedded, maud, KERNEL_KILLS_ITSELF))
    assert said == {"memory_limit": False, "limit": "1 GB"}


def test_resource_usage_reports_the_limit(embedded: RunningFacility, maud: HubSession) -> None:
    reply = requests.get(
        f"{embedded.url}/user/{USER}/api/metrics/v1",
        headers={"Authorization": f"token {maud.token()}"},
        timeout=30,
    )
    reply.raise_for_status()
    limits = reply.json()["limits"]
    assert limits["memory"]["rss"] == GIB
    # Its CPU limit in percent (1 core: 100), so an idle server raises no warning (the status bar
    # turned red at 1 % CPU with the limit in cores); nor does memory far below its limit.
    assert limits["cpu"]["cpu"] == 100
    assert limits["cpu"]["warn"] is False and limits["memory"]["warn"] is False, limits


def test_jupyterlab_checks_no_build_and_fetches_no_news(embedded: RunningFacility, maud: HubSession) -> None:
    """JupyterLab's page config from the server (hub_config.singleuser): no build check at each page
    load (seconds of the server's CPU), no news feed to opt into."""
    page = requests.get(
        f"{embedded.url}/user/{USER}/lab", headers={"Authorization": f"token {maud.token()}"}, timeout=30
    )
    page.raise_for_status()
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert found, page.text[:2000]
    config = json.loads(found.group(1))
    assert config["buildCheck"] is False and config["buildAvailable"] is False
    assert config["news"] == {"disabled": True}


def test_jupyterlab_shows_memory_and_the_memory_error(embedded: RunningFacility, maud: HubSession) -> None:
    sync_api = sync_api_or_skip()
    shots = emptied_artifacts("memory-limit")
    with chromium_page(1440, 900) as page:
        log_in(page, embedded.url, USER, embedded.password_of(USER))
        page.goto(f"{embedded.url}/user/{USER}/lab")
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        usage = page.locator("#jp-main-statusbar").get_by_text(
            re.compile(r"CPU: +[\d.]+ % \| Mem: +[\d.]+ / 1024(\.00)? MB")
        )
        sync_api.expect(usage).to_be_visible(timeout=30_000)
        # Light and dark, wide and narrow: the use against the limits stays in the status bar.
        shown = lambda _: sync_api.expect(usage).to_be_visible()  # noqa: E731 - checked at each look
        in_each_look(page, shots, "01-status-bar-memory", (WIDE, NARROW), shown)
        page.click('.jp-LauncherCard[data-category="Notebook"]')
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
        sync_api.expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
        page.locator(".jp-NotebookPanel:visible .jp-Cell").last.locator(".cm-content").click()
        page.keyboard.insert_text("block = bytearray(1536 * 1024**2)")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first
        sync_api.expect(output).to_contain_text("may use at most 1 GB of memory", timeout=60_000)
        in_each_look(page, shots, "02-memory-error", (WIDE, NARROW), lambda _: sync_api.expect(output).to_be_visible())

        # The kernel is stopped by the cgroup's OOM killer (KERNEL_PAST_THE_LIMIT). JupyterLab would say
        # only that it "appears to have died"; the facility's dialog takes its place and names the limit.
        page.evaluate(RECORD_DIALOGS)
        last_cell = page.locator(".jp-NotebookPanel:visible .jp-Cell").last.locator(".cm-content")
        last_cell.click()
        page.keyboard.insert_text(KERNEL_PAST_THE_LIMIT)
        page.keyboard.press("Shift+Enter")
        dialog = page.locator(".jp-Dialog")
        sync_api.expect(dialog).to_contain_text("Kernel stopped at the memory limit", timeout=60_000)
        sync_api.expect(dialog.locator(".af-MemoryStop")).to_contain_text(
            "this notebook server may use at most 1 GB of memory"
        )
        sync_api.expect(dialog).to_have_count(1)  # JupyterLab's own is closed
        sync_api.expect(page.get_by_text("appears to have died")).to_have_count(0)
        page.screenshot(path=shots / "03-kernel-stopped-at-the-limit.png")
        page.set_viewport_size(NARROW)
        page.screenshot(path=shots / "03b-kernel-stopped-at-the-limit-narrow.png")
        page.set_viewport_size(WIDE)
        seen = page.evaluate(
            "window.afDialogs.map(([change, node, t]) =>"
            " [change, node.querySelector('.jp-Dialog-header').textContent.trim(), t])"
        )
        # JupyterLab's dialog is attached, then closed before or just after React drew its title.
        (shown, generic, t0), (closed, _, t1), (replaced, ours, _) = seen
        assert (shown, closed, replaced) == ("shown", "closed", "shown") and generic in ("", "Kernel Restarting"), seen
        assert ours == "Kernel stopped at the memory limit" and t1 - t0 < 5000, seen
        print(f"JupyterLab's dialog was on the page for {t1 - t0:.0f} ms")
        dialog.locator(".jp-mod-accept").click()
        sync_api.expect(dialog).to_have_count(0)
        sync_api.expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
        last_cell.click()
        page.keyboard.insert_text("print('after')")
        page.keyboard.press("Shift+Enter")
        after = page.locator(".jp-NotebookPanel:visible .jp-Cell").filter(has_text="print('after')")
        said = after.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        sync_api.expect(said).to_contain_text(
            "Your kernel was stopped and started afresh: this notebook server may use at most 1 GB of memory",
            timeout=60_000,
        )
        sync_api.expect(after.locator(".jp-OutputArea")).to_contain_text("after")  # the cell's own output follows
        page.screenshot(path=shots / "04-kernel-says-why-it-was-stopped.png")

        # A kernel that dies for another reason (here it kills itself) keeps JupyterLab's dialog.
        last_cell.click()
        page.keyboard.insert_text(KERNEL_KILLS_ITSELF)
        page.keyboard.press("Shift+Enter")
        sync_api.expect(dialog).to_contain_text("appears to have died", timeout=60_000)
        page.wait_for_timeout(3000)  # the facility's check answers in milliseconds: it had its chance
        sync_api.expect(dialog).to_contain_text("appears to have died")
        sync_api.expect(page.locator(".af-MemoryStop")).to_have_count(0)
        page.screenshot(path=shots / "05-kernel-died-otherwise.png")
        dialog.locator(".jp-mod-accept").click()
        sync_api.expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)

        # The facility's dialog in the dark theme, wide and narrow.
        pick_jupyterlab_theme(page, "JupyterLab Dark")
        last_cell.click()
        page.keyboard.insert_text(KERNEL_PAST_THE_LIMIT)
        page.keyboard.press("Shift+Enter")
        sync_api.expect(dialog).to_contain_text("Kernel stopped at the memory limit", timeout=60_000)
        page.screenshot(path=shots / "06-kernel-stopped-at-the-limit-dark.png")
        page.set_viewport_size(NARROW)
        page.screenshot(path=shots / "06b-kernel-stopped-at-the-limit-dark-narrow.png")
        page.set_viewport_size(WIDE)
        dialog.locator(".jp-mod-accept").click()
        pick_jupyterlab_theme(page, "JupyterLab Light")


def test_the_cgroup_goes_with_the_server(embedded: RunningFacility, maud: HubSession) -> None:
    path = memory_limit.cgroup_path(str(embedded.state_dir), USER)
    assert path is not None and path.exists()
    maud.stop_server()
    assert not path.exists()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CPU_LIMIT": "1.0"}, ("--ResourceUseDisplay.cpu_limit=100",)),
        ({"CPU_LIMIT": "2.5"}, ("--ResourceUseDisplay.cpu_limit=250",)),
        ({"CPU_LIMIT": "0"}, ()),
        ({"CPU_LIMIT": "two"}, ()),
        ({}, ()),
    ],
)
def test_cpu_limit_reaches_resource_usage_in_percent(environ: dict[str, str], expected: tuple[str, ...]) -> None:
    from hub_config.singleuser import cpu_limit_arguments

    assert cpu_limit_arguments(environ) == expected
