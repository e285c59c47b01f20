"""One browser origin per user (hub.subdomains): a page from alice's server cannot read bob's session.

bob is logged in to the hub in Chromium and has his server open. A page with a script arrives from
alice's server URL (http://alice.localhost:<port>/user/alice/...; Playwright answers that request
with the script, standing in for a server alice controls, since her real jupyter-server would not
serve bob anything). The script tries to read bob's hub page, bob's hub API and bob's server, by
fetch with cookies and through iframes. On its own origin the same script reads bob's server
(the probes work); from alice's origin everything is refused.

Screenshots: test-artifacts/origins/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page, emptied_artifacts, sync_api_or_skip
from tests.harness import RunningFacility, embedded_raw

sync_api = sync_api_or_skip()

ATTACKER, VICTIM = "origin-alice", "origin-bob"

# Each probe reports what it could read: "read: <text>" or "refused: <why>".
PROBE_PAGE = """<!doctype html><title>probe</title><body><h1>Probe from %(origin)s</h1><pre id="out"></pre>
<script>
async function viaFetch(url) {
  try {
    const reply = await fetch(url, {credentials: "include"});
    return "read: " + reply.status + " " + (await reply.text()).slice(0, 300);
  } catch (e) { return "refused: " + e; }
}
function viaFrame(url) {
  return new Promise(done => {
    const frame = document.createElement("iframe");
    frame.src = url;
    frame.onload = () => {
      try { done("read: " + frame.contentDocument.body.innerText.slice(0, 300)); }
      catch (e) { done("refused: " + e); }
    };
    setTimeout(() => done("refused: no load in 20 s"), 20000);
    document.body.appendChild(frame);
  });
}
(async () => {
  const results = {
    hub_api: await viaFetch(%(hub)s + "/hub/api/user"),
    hub_home_frame: await viaFrame(%(hub)s + "/hub/home"),
    server_api: await viaFetch(%(server)s + "api/me"),
    server_api_frame: await viaFrame(%(server)s + "api/me"),
  };
  document.getElementById("out").textContent = JSON.stringify(results, null, 2);
  window.probeResults = results;
})();
</script>"""


@pytest.fixture(scope="module")
def fac(start_facility: Any) -> RunningFacility:
    raw = embedded_raw()
    return start_facility({**raw, "hub": {**raw["hub"], "subdomains": True}})


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("origins")


@pytest.fixture(scope="module")
def bob_server(fac: RunningFacility) -> Iterator[str]:
    """bob's running server: its URL on his own origin."""
    session = fac.login(VICTIM)
    reply = session.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-300:]
    server = session.wait_ready()
    port = fac.runtime["ports"]["public"]
    assert fac.url == f"http://localhost:{port}"
    # With subdomains the hub names the server by its full URL, on bob's own origin.
    assert server["url"] == f"http://{VICTIM}.localhost:{port}/user/{VICTIM}/"
    yield server["url"]
    session.stop_server()


def _probe(page: Any, url: str, hub: str, server: str) -> dict[str, str]:
    """Open `url` (answered by Playwright with the probe page) and return what its script could read."""
    origin = url.split("/user/")[0]
    html = PROBE_PAGE % {"origin": origin, "hub": repr(hub), "server": repr(server)}
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(url)
    page.wait_for_function("window.probeResults !== undefined", timeout=90_000)
    return page.evaluate("window.probeResults")


def test_a_page_from_alices_server_cannot_read_bobs_session(fac: RunningFacility, bob_server: str, shots: Path) -> None:
    hub = fac.url
    with chromium_page(1200, 800) as page:
        # bob logs in and opens his server: cookies for the hub and for his server are in the browser.
        page.goto(f"{hub}/hub/login")
        page.fill("#username_input", VICTIM)
        page.fill("#password_input", fac.password_of(VICTIM))
        page.click("#login_submit")
        page.goto(f"{bob_server}lab")
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        assert page.url.startswith(f"http://{VICTIM}.localhost:")
        page.screenshot(path=shots / "01-bob-lab-on-his-origin.png")

        # The probe on bob's own origin reads his server: the probes can read when allowed.
        own = _probe(page, f"{bob_server}probe.html", hub, bob_server)
        page.screenshot(path=shots / "02-probe-on-bobs-origin.png")
        readable = [own["server_api"], own["server_api_frame"]]
        assert any(r.startswith("read:") and VICTIM in r for r in readable), own

        # The same probe served from alice's server URL reads nothing of bob's.
        port = fac.runtime["ports"]["public"]
        alice_page = f"http://{ATTACKER}.localhost:{port}/user/{ATTACKER}/evil.html"
        stolen = _probe(page, alice_page, hub, bob_server)
        page.screenshot(path=shots / "03-probe-on-alices-origin.png")
    assert all(result.startswith("refused:") for result in stolen.values()), stolen
