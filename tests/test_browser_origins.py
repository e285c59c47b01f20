"""One browser origin per user (hub.subdomains): a page from alice's server cannot read bob's session.

bob is logged in to the hub in Chromium and has his server open. A page with a script arrives from
alice's server URL (http://alice.localhost:<port>/user/alice/...; Playwright answers that request
with the script, standing in for a server alice controls, since her real jupyter-server would not
serve bob anything). The script tries to read bob's hub page, bob's hub API (with the XSRF token
of that page) and bob's JupyterLab page, by fetch with his cookies. On bob's own origin the same
script reads his server (the probes work); from alice's origin everything is refused. With
hub.subdomains off, alice's page shares the hub's origin and reads all three (run once by hand).

Screenshots: test-artifacts/origins/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import facility
from facility.accounts import remove_account
from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.harness import RunningFacility, embedded_raw

sync_api = sync_api_or_skip()

ATTACKER, VICTIM = "origin-alice", "origin-bob"

# Each probe reports what it could read: "read: <status> <text>" or "refused: <why>". What a script
# in the same origin can do: fetch the hub's home page with bob's cookies, take the XSRF token
# from it (window.jhdata), then read the hub's API; fetch bob's JupyterLab page with the XSRF token
# of his server's `_xsrf` cookie (JupyterHub >= 4.1 accepts a cookie on a fetch, unlike a
# navigation, only with it: without it the server redirects to the hub's login, another origin,
# and the fetch fails). (Frames cannot help it: the hub and the servers refuse to be framed at all.)
PROBE_PAGE = """<!doctype html><title>probe</title><body><h1>Probe from %(origin)s</h1><pre id="out"></pre>
<script>
async function probe(url, headers) {
  try {
    const reply = await fetch(url, {credentials: "include", headers: headers || {}});
    return "read: " + reply.status + " " + (await reply.text()).slice(0, 4000);
  } catch (e) { return "refused: " + e; }
}
(async () => {
  const home = await probe(%(hub)s + "/hub/home");
  const xsrf = (home.match(/xsrf_token: "([^"]*)"/) || ["", ""])[1];
  const serverXsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || ["", ""])[1];
  const results = {
    hub_home: home,
    hub_api: await probe(%(hub)s + "/hub/api/user", {"X-XSRFToken": xsrf}),
    server_lab: await probe(%(server)s + "lab", {"X-XSRFToken": serverXsrf}),
  };
  document.getElementById("out").textContent = JSON.stringify(
    Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.slice(0, 150)])), null, 2);
  window.probeResults = results;
})();
</script>"""


@pytest.fixture(scope="module")
def fac(start_facility: Any) -> RunningFacility:
    raw = embedded_raw()
    running = start_facility({**raw, "hub": {**raw["hub"], "subdomains": True}})
    # A new home: ~/examples cloned from an earlier test facility's examples repository (another
    # history) fails nbgitpuller's merge ("refusing to merge unrelated histories"): the examples stay old.
    remove_account(VICTIM, facility.load(running.facility_file).auth.unix_accounts)
    return running


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("origins")


def _probe(page: Any, url: str, hub: str, server: str) -> dict[str, str]:
    """Open `url` (answered by Playwright with the probe page) and return what its script could read."""
    origin = url.split("/user/")[0]
    html = PROBE_PAGE % {"origin": origin, "hub": repr(hub), "server": repr(server)}
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(url)
    page.wait_for_function("window.probeResults !== undefined", timeout=90_000)
    return page.evaluate("window.probeResults")


def _keep_evidence(fac: RunningFacility, page: Any, shots: Path, console: list[str]) -> None:
    """What the page showed and the hub's and bob's server's logs, for a failure to be read later."""
    page.screenshot(path=shots / "failed-spawn.png")
    (shots / "failed-spawn.txt").write_text(f"{page.url}\n\n" + "\n".join(console) + "\n\n" + page.content())
    logs = fac.state_dir / "logs"
    for log in [logs / "hub.log", logs / "proxy.log", *(logs / "servers").glob("*.log")]:
        if log.is_file():
            (shots / log.name).write_bytes(log.read_bytes()[-200_000:])


def test_a_page_from_alices_server_cannot_read_bobs_session(fac: RunningFacility, shots: Path) -> None:
    hub, port = fac.url, fac.runtime["ports"]["public"]
    assert hub == f"http://localhost:{port}"
    with chromium_page(1200, 800) as page:
        # bob logs in and starts his server from the form: the browser holds his hub and server cookies.
        log_in(page, hub, VICTIM, fac.password_of(VICTIM))
        page.wait_for_selector(".af-spawn-form")
        page.fill("#af-local-cores", "1")
        page.fill("#af-local-memory_gb", "2")
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.click('form button[type="submit"]')
        try:  # the hub opens JupyterLab once the server (and its pull of the examples) is up
            page.wait_for_url(re.compile(rf"/user/{VICTIM}/lab"), timeout=120_000)
        except sync_api.TimeoutError:
            _keep_evidence(fac, page, shots, console)
            raise
        page.wait_for_selector("#jp-main-dock-panel")
        bob_server = page.url[: page.url.index("lab")]
        assert bob_server == f"http://{VICTIM}.localhost:{port}/user/{VICTIM}/"  # his own origin
        page.screenshot(path=shots / "01-bob-lab-on-his-origin.png")

        # On bob's own origin the probe reads his server: the probes read what they may.
        own = _probe(page, f"{bob_server}probe.html", hub, bob_server)
        page.screenshot(path=shots / "02-probe-on-bobs-origin.png")
        assert own["server_lab"].startswith("read: 200") and f"/user/{VICTIM}/" in own["server_lab"], own

        # The same probe served from alice's server URL reads nothing of bob's.
        alice_page = f"http://{ATTACKER}.localhost:{port}/user/{ATTACKER}/evil.html"
        stolen = _probe(page, alice_page, hub, bob_server)
        page.screenshot(path=shots / "03-probe-on-alices-origin.png")
    assert all(result.startswith("refused:") for result in stolen.values()), json.dumps(stolen, indent=1)
