"""The form's memory is enforced on the local backend (issue 18), on the real facility.

maud's server gets 1 GB. Its processes carry RLIMIT_DATA of 1 GiB and sit in a memory cgroup of
1 GiB (this host: cgroup v1, writable by the hub as root); a cell asking for 1.5 GB at once gets
a MemoryError that names the limit, and the kernel lives on; two processes of 700 MB each (each
under the process limit) pass the cgroup's limit together and the kernel's OOM killer stops one;
when that is the notebook's kernel, the kernel that starts again says so, naming the limit.
jupyter-resource-usage
reports the limit, and JupyterLab shows it in its status bar and the MemoryError in the notebook
(a real browser; screenshots in test-artifacts/memory-limit/). The cgroup goes with the server.
JupyterLab's page asks the server for no build check and no news (hub_config.singleuser).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import facility
from backends.local import memory_limit
from facility.accounts import remove_account
from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.harness import HubSession, RunningFacility, execute_in_kernel

USER = "maud"
GIB = 1024**3


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
        status = page.locator("#jp-main-statusbar")
        sync_api.expect(status).to_contain_text(
            re.compile(r"CPU: +[\d.]+ % \| Mem: +[\d.]+ / 1024(\.00)? MB"), timeout=30_000
        )
        page.screenshot(path=shots / "01-status-bar-memory.png")
        page.click('.jp-LauncherCard[data-category="Notebook"]')
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
        sync_api.expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
        page.locator(".jp-NotebookPanel:visible .jp-Cell").last.locator(".cm-content").click()
        page.keyboard.insert_text("block = bytearray(1536 * 1024**2)")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first
        sync_api.expect(output).to_contain_text("may use at most 1 GB of memory", timeout=60_000)
        page.screenshot(path=shots / "02-memory-error.png")

        # The kernel holds 700 MB and a process it starts asks for 500 MB more: together past the
        # cgroup's 1 GB, and the OOM killer stops the largest, the kernel. JupyterLab says it died and
        # starts it again; the kernel that starts says why in the next cell's output.
        last_cell = page.locator(".jp-NotebookPanel:visible .jp-Cell").last.locator(".cm-content")
        last_cell.click()
        page.keyboard.insert_text(
            "held = bytearray(700 * 1024**2)\n"
            "import subprocess, sys\n"
            "subprocess.run([sys.executable, '-c', 'b = bytearray(500 * 1024**2); import time; time.sleep(3)'])"
        )
        page.keyboard.press("Shift+Enter")
        dialog = page.locator(".jp-Dialog")
        sync_api.expect(dialog).to_contain_text("appears to have died", timeout=60_000)
        page.screenshot(path=shots / "03-kernel-stopped-at-the-limit.png")
        dialog.locator(".jp-mod-accept").click()
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
