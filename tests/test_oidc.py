"""OpenID Connect login against a real provider (npm oidc-provider), group allowances in the hub and
the gateway, tokens in the notebook and on Dask workers, and cross-user isolation.

One facility (`af up` with auth.type: oidc) and one provider serve the whole module.
"""

from __future__ import annotations

import copy
import html
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

from tests.harness import (
    HubSession,
    RunningFacility,
    embedded_raw,
    execute_in_kernel,
    facility_folder,
    free_port_block,
    run_af,
)
from tests.harness import write_facility as write_yaml
from tests.oidc_provider.fixture import Provider, oidc_login, write_settings

pytestmark = pytest.mark.side_facility

ACCESS_TOKEN_TTL = 20  # seconds: short, so the tests see the hub refresh it
REFRESH_AGE = 4  # the hub renews a token with less than 2 x 4 s left
CLIENT_SECRET = "test-client-secret-0123456789"
USERS = {
    "alice": {"password": "alice-pw", "groups": ["cms"]},
    "bob": {"password": "bob-pw", "groups": ["atlas"]},
    "dana": {"password": "dana-pw", "groups": ["af-admins"]},
}


def _facility(issuer: str) -> dict[str, Any]:
    raw = copy.deepcopy(embedded_raw())
    raw["data"]["require_token"] = True  # the data lake accepts only the tokens the hub hands out
    local = raw["backends"][0]
    local["resources"]["cores"] = {"default": 1, "min": 1, "max": 2}
    local["dask"]["worker_memory_gb"] = {"default": 1, "min": 1, "max": 4}
    cms_only = copy.deepcopy(local)
    cms_only.update(name="cms-node", label="CMS group node", allowed_groups=["cms"])
    raw["backends"].append(cms_only)
    raw["images"].append({"name": "root-6", "label": "ROOT 6", "registry": "registry.example.org/af/root:6.32"})
    raw["auth"] = {
        "type": "oidc",
        "oidc": {
            "issuer": issuer,
            "client_id": "analysis-facility",
            "client_secret_env": "AF_TEST_OIDC_SECRET",
            "scopes": ["openid", "profile", "groups", "offline_access"],
            "username_claim": "preferred_username",
            "groups_claim": "groups",
            "admin_groups": ["af-admins"],
            "refresh_age_seconds": REFRESH_AGE,
        },
        "allowances": [
            # Everyone: one core, the default image, small Dask workers.
            {"max": {"cores": 1, "worker_memory_gb": 1, "workers": 1}, "images": ["coffea-2026"]},
            # CMS: the full local limits and every image.
            {"groups": ["cms"]},
        ],
    }
    return raw


class OIDCFacility(RunningFacility):
    provider: Provider

    def oidc_login(self, username: str) -> HubSession:
        return oidc_login(self.url, self.provider.issuer, username, USERS[username]["password"])


@pytest.fixture(scope="module")
def oidc_facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCFacility]:
    root = facility_folder("oidc")
    hub_port = free_port_block()
    provider_port = free_port_block(2)
    client = {
        "client_id": "analysis-facility",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{hub_port}/hub/oauth_callback"],
    }
    settings = write_settings(root / "provider.json", provider_port, client, USERS, ACCESS_TOKEN_TTL)
    provider = Provider(provider_port, settings, root / "provider.log")
    provider.start()
    raw = _facility(provider.issuer)
    raw["hub"] = {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{hub_port}"}
    running = OIDCFacility(root / "state", write_yaml(root / "facility.yaml", raw))
    running.provider = provider
    os.environ["AF_TEST_OIDC_SECRET"] = CLIENT_SECRET
    try:
        up = run_af(running.state_dir, "up", "--facility", str(running.facility_file), "--port", str(hub_port))
        assert f"Log in through {provider.issuer}" in up.stdout
        yield running
    finally:
        run_af(running.state_dir, "down", check=False)
        provider.stop()
        os.environ.pop("AF_TEST_OIDC_SECRET", None)
        shutil.rmtree(root, ignore_errors=True)


def _backend_choices(form: str) -> list[str]:
    return re.findall(r'name="backend" value="([^"]+)"', form)


def _hub_user(session: HubSession) -> dict[str, Any]:
    reply = session.api("GET", "/user")
    reply.raise_for_status()
    return reply.json()


def test_af_up_refuses_to_start_without_the_client_secret(tmp_path: Path) -> None:
    raw = _facility("http://127.0.0.1:9")
    env_backup = os.environ.pop("AF_TEST_OIDC_SECRET", None)
    try:
        result = run_af(tmp_path / "state", "up", "--facility", str(write_yaml(tmp_path / "f.yaml", raw)), check=False)
    finally:
        if env_backup is not None:
            os.environ["AF_TEST_OIDC_SECRET"] = env_backup
    assert result.returncode == 2
    assert "$AF_TEST_OIDC_SECRET is not set" in result.stderr


def _text_of(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def test_af_up_names_an_identity_provider_that_does_not_answer(tmp_path: Path, monkeypatch) -> None:
    raw = _facility(f"http://127.0.0.1:{free_port_block(1)}")  # nothing listens there
    raw.pop("data")
    raw["backends"] = raw["backends"][:1]
    raw["backends"][0].pop("data_cache")
    monkeypatch.setenv("AF_TEST_OIDC_SECRET", CLIENT_SECRET)
    state = tmp_path / "state"
    try:
        result = run_af(
            state, "up", "--facility", str(write_yaml(tmp_path / "f.yaml", raw)), "--timeout", "15", check=False
        )
        assert result.returncode != 0
        # On a loaded host the hub may not have reached the provider within af up's 15 s; its
        # supervisor keeps restarting it until `af down`, so its log gets the line soon after.
        expected = f"cannot read the OpenID configuration of {raw['auth']['oidc']['issuer']}"
        deadline = time.monotonic() + 90
        while expected not in _text_of(state / "logs" / "hub.log") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert expected in _text_of(state / "logs" / "hub.log"), _text_of(state / "logs" / "hub.log")[-3000:]
    finally:
        run_af(state, "down", check=False)


def test_browserless_login_through_the_provider_gives_groups_and_admin(oidc_facility: OIDCFacility) -> None:
    alice = _hub_user(oidc_facility.oidc_login("alice"))
    assert alice["name"] == "alice" and alice["groups"] == ["cms"] and not alice["admin"]
    bob = _hub_user(oidc_facility.oidc_login("bob"))
    assert bob["groups"] == ["atlas"]
    assert _hub_user(oidc_facility.oidc_login("dana"))["admin"]  # member of auth.oidc.admin_groups
    # The provider checks passwords: a wrong one never reaches the hub.
    with pytest.raises(AssertionError, match="did not return to the hub"):
        oidc_login(oidc_facility.url, oidc_facility.provider.issuer, "alice", "wrong")
    # The shared-password login of the embedded facility is gone: the hub's login page is the provider's.
    page = requests.get(f"{oidc_facility.url}/hub/login", timeout=30)
    assert oidc_facility.provider.issuer in page.text or "oauth_login" in page.text


def test_the_form_shows_only_what_the_users_groups_allow(oidc_facility: OIDCFacility) -> None:
    alice_form = oidc_facility.oidc_login("alice").spawn_form()
    assert _backend_choices(alice_form) == ["local", "cms-node"]
    assert 'name="cores"' in alice_form and 'max="2"' in alice_form and "ROOT 6" in alice_form
    bob_form = oidc_facility.oidc_login("bob").spawn_form()
    assert _backend_choices(bob_form) == ["local"]
    assert 'max="2"' not in bob_form and 'max="1"' in bob_form
    assert "ROOT 6" not in bob_form and "CMS group node" not in bob_form


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "cms-node"}, "backend: you may not use 'cms-node' (it is open to the groups cms)"),
        ({"backend": "local", "cores": 2}, "cores: 2 is out of range; choose between 1 and 1"),
        ({"backend": "local", "image": "root-6"}, "image: 'root-6' is not available; choose one of: coffea-2026"),
    ],
)
def test_crafted_requests_outside_the_allowance_are_refused(oidc_facility: OIDCFacility, options, message) -> None:
    bob = oidc_facility.oidc_login("bob")
    reply = bob.api("POST", "/users/bob/server", json={"user_options": options})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["message"]
    form_reply = bob.post_spawn_form({k: str(v) for k, v in options.items()})
    assert form_reply.status_code == 400 and message in html.unescape(form_reply.text)
    assert bob.server() is None


def _gateway(fac: OIDCFacility, backend: str, session: HubSession) -> Gateway:
    return Gateway(fac.runtime["gateways"][backend]["url"], auth=JupyterHubAuth(api_token=session.token()))


def test_gateway_holds_users_to_their_allowance(oidc_facility: OIDCFacility) -> None:
    bob = oidc_facility.oidc_login("bob")
    with _gateway(oidc_facility, "local", bob) as gateway:
        spec = gateway.cluster_options()
        assert spec.worker_memory_gb == 1 and list(spec._fields["image"].options) == ["coffea-2026"]
        with pytest.raises(ValueError, match="worker_memory_gb must be <= 1"):
            gateway.new_cluster(worker_memory_gb=4)
        assert gateway.list_clusters() == []
    with _gateway(oidc_facility, "cms-node", bob) as gateway, pytest.raises(Exception) as caught:  # noqa: B017
        gateway.new_cluster()
    assert "may not start clusters on 'cms-node'" in str(caught.value), repr(caught.value)


TOKEN_IN_NOTEBOOK = """
import os, stat
for variable in ("AF_ACCESS_TOKEN_FILE", "BEARER_TOKEN_FILE"):
    path = os.environ[variable]
    mode = oct(stat.S_IMODE(os.stat(path).st_mode)), oct(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
    print(variable, "MODE", *mode)
print("TOKEN", open(os.environ["AF_ACCESS_TOKEN_FILE"]).read())
"""

READ_THROUGH_CACHE = """
import os, subprocess
url = {url!r}
def read(env):
    done = subprocess.run(["xrdcp", "--force", "--nopbar", url, "/dev/null"], env=env, capture_output=True, text=True)
    return "OK" if done.returncode == 0 else "REFUSED " + done.stderr.strip().splitlines()[-1]
print("WITH_TOKEN", read(dict(os.environ)))
print("WITHOUT", read({{k: v for k, v in os.environ.items() if k != "BEARER_TOKEN_FILE"}}))
"""

TOKEN_ON_WORKERS = """
import os, stat
from dask_backends import new_cluster
cluster = new_cluster("local", workers=1, worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
def token_file():
    path = os.environ["AF_ACCESS_TOKEN_FILE"]
    import subprocess
    read = subprocess.run(["xrdcp", "--force", "--nopbar", {lake_file!r}, "/dev/null"], capture_output=True)
    return path, oct(stat.S_IMODE(os.stat(path).st_mode)), open(path).read(), read.returncode
(path, mode, token, read), = client.run(token_file).values()
print("WORKER_FILE", path)
print("WORKER_MODE", mode)
print("WORKER_TOKEN", token)
print("WORKER_READ", read)
print("CLUSTER", cluster.name)
"""


@pytest.fixture(scope="module")
def alice_notebook(oidc_facility: OIDCFacility) -> tuple[HubSession, str, str]:
    alice = oidc_facility.oidc_login("alice")
    reply = alice.post_spawn_form({"backend": "local", "cores": "2", "memory_gb": "2", "image": "root-6"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = alice.wait_ready()
    return alice, f"{alice.url}{server['url']}", alice.token()


def test_token_file_in_the_notebook_is_private_and_refreshed_before_expiry(
    oidc_facility: OIDCFacility, alice_notebook
) -> None:
    alice, url, api_token = alice_notebook
    out = execute_in_kernel(url, api_token, TOKEN_IN_NOTEBOOK)
    # alice's own file (0600) in a folder only root writes to, readable by her account's group (0750).
    assert "AF_ACCESS_TOKEN_FILE MODE 0o600 0o750" in out and "BEARER_TOKEN_FILE MODE 0o600 0o750" in out
    first = re.search(r"TOKEN (\S+)", out).group(1)
    assert oidc_facility.provider.userinfo(first).json()["preferred_username"] == "alice"
    token_file = oidc_facility.state_dir / "tokens" / "alice" / "access_token"
    first_data_token = (token_file.parent / "bearer_token").read_text()
    # Keep using the hub as a browser would; the hub renews the token before it runs out.
    deadline = time.monotonic() + ACCESS_TOKEN_TTL + 15
    while token_file.read_text() == first and time.monotonic() < deadline:
        alice.api("GET", "/user")
        time.sleep(1)
    second = token_file.read_text()
    assert second != first, "the hub did not refresh the access token"
    assert oidc_facility.provider.userinfo(second).ok
    assert f"TOKEN {second}" in execute_in_kernel(url, api_token, TOKEN_IN_NOTEBOOK)
    assert (token_file.parent / "bearer_token").read_text() != first_data_token  # data token renewed too
    # Refreshed before expiry: the first token was still valid when it was replaced; later it is refused.
    while oidc_facility.provider.userinfo(first).ok and time.monotonic() < deadline + ACCESS_TOKEN_TTL:
        time.sleep(1)
    assert oidc_facility.provider.userinfo(first).status_code == 401


@pytest.fixture(scope="module")
def lake_file(oidc_facility: OIDCFacility) -> str:
    data = oidc_facility.runtime["data"]
    target = Path(data["origin"]["local_root"]) / "store" / "oidc-test" / "events.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("alice's events\n")
    return f"{data['caches']['local-xcache']['url']}//store/oidc-test/events.txt"


def test_notebook_reads_the_data_lake_with_its_token(oidc_facility: OIDCFacility, alice_notebook, lake_file) -> None:
    _, url, api_token = alice_notebook
    out = execute_in_kernel(url, api_token, READ_THROUGH_CACHE.format(url=lake_file))
    assert "WITH_TOKEN OK" in out
    assert "WITHOUT REFUSED" in out and "Auth failed" in out


def test_token_reaches_dask_workers_and_no_log_or_command_line(
    oidc_facility: OIDCFacility, alice_notebook, lake_file
) -> None:
    alice, url, api_token = alice_notebook
    out = execute_in_kernel(url, api_token, TOKEN_ON_WORKERS.format(lake_file=lake_file))
    assert "WORKER_READ 0" in out  # the worker read the data lake with the shipped data token
    token = (oidc_facility.state_dir / "tokens" / "alice" / "access_token").read_text()
    worker_token = re.search(r"WORKER_TOKEN (\S+)", out).group(1)
    assert "WORKER_MODE 0o600" in out
    # The workers hold alice's current token (the hub may have renewed the notebook's copy since).
    assert oidc_facility.provider.userinfo(worker_token).json()["preferred_username"] == "alice"
    worker_file = Path(re.search(r"WORKER_FILE (\S+)", out).group(1))
    assert stat.S_IMODE(worker_file.parent.stat().st_mode) == 0o700
    data_token = (oidc_facility.state_dir / "tokens" / "alice" / "bearer_token").read_text()
    secrets = (worker_token, token, data_token)
    # No token is in any process's command line or environment, nor in any log of the facility.
    for proc in psutil.process_iter(["cmdline", "environ"]):
        environ = " ".join(f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
        text = " ".join(proc.info["cmdline"] or []) + environ
        assert not any(s in text for s in secrets), f"a token is visible in process {proc.pid}"
    for log in (oidc_facility.state_dir / "logs").glob("*.log"):
        content = log.read_text(errors="replace")
        assert not any(s in content for s in secrets), f"a token is in {log}"
    cluster = re.search(r"CLUSTER (\S+)", out).group(1)
    TestIsolation.alice_cluster = cluster


@pytest.fixture(scope="module")
def bob(oidc_facility: OIDCFacility) -> HubSession:
    return oidc_facility.oidc_login("bob")


class TestIsolation:
    """bob, logged in through the same provider, tries to reach alice's things through every interface."""

    alice_cluster: str = ""

    def test_bob_cannot_use_alices_server_or_files(self, oidc_facility, alice_notebook, bob) -> None:
        _, url, _ = alice_notebook
        bob_token = bob.token()
        for path in ("api/status", "api/contents", "api/kernels", "files/.bashrc"):
            reply = requests.get(f"{url}{path}", headers={"Authorization": f"token {bob_token}"}, timeout=30)
            assert reply.status_code == 403, (path, reply.status_code)
        # With bob's browser cookies the proxy sends him through the hub's OAuth, which refuses him.
        page = bob.http.get(f"{url}api/contents", timeout=30, allow_redirects=True)
        assert page.status_code == 403 or "alice" not in page.url

    def test_bob_cannot_read_alices_token_or_stop_her_server(self, oidc_facility, alice_notebook, bob) -> None:
        for method, path in [
            ("GET", "/users/alice"),
            ("DELETE", "/users/alice/server"),
            ("POST", "/users/alice/tokens"),
            ("GET", "/users/alice/tokens"),
        ]:
            reply = bob.api(method, path, json={} if method == "POST" else None)
            assert reply.status_code in (403, 404), (method, path, reply.status_code)
        own = bob.api("GET", "/users/bob").json()
        assert "auth_state" not in own or not own["auth_state"]  # not even his own tokens leak over the API
        alice_session = alice_notebook[0]
        assert alice_session.server() is not None and alice_session.server()["ready"]

    def test_bob_cannot_open_alices_dashboard(self, oidc_facility, alice_notebook, bob) -> None:
        # Even knowing the cluster's name, bob gets no dashboard: the hub's dashboard service
        # adds the key of (bob, cluster), which alice's scheduler refuses; the gateway's own
        # route, without any key, is refused too (tests/test_dashboard_auth.py goes further).
        assert self.alice_cluster, "test_token_reaches_dask_workers must run first"
        address = oidc_facility.runtime["gateways"]["local"]["url"]
        with Gateway(address, auth=JupyterHubAuth(api_token=bob.token())) as gateway:
            assert gateway.list_clusters() == []
        through_hub = f"{oidc_facility.url}/services/dask-dashboards/local/clusters/{self.alice_cluster}/status"
        page = bob.http.get(through_hub, timeout=30)
        assert page.status_code == 404 and "have no running Dask cluster" in page.text
        assert requests.get(f"{address}/clusters/{self.alice_cluster}/status", timeout=30).status_code == 403
        guessed = requests.get(f"{address}/clusters/{os.urandom(16).hex()}/status", timeout=30)
        assert guessed.status_code == 404

    def test_bob_cannot_list_connect_or_stop_alices_cluster(self, oidc_facility, alice_notebook, bob) -> None:
        assert self.alice_cluster, "test_token_reaches_dask_workers must run first"
        address = oidc_facility.runtime["gateways"]["local"]["url"]
        gateway = Gateway(address, auth=JupyterHubAuth(api_token=bob.token()))
        try:
            assert gateway.list_clusters() == []
            with pytest.raises(Exception):  # noqa: B017 - dask-gateway raises ValueError or HTTPError
                gateway.connect(self.alice_cluster)
            with pytest.raises(Exception):  # noqa: B017
                gateway.stop_cluster(self.alice_cluster)
        finally:
            gateway.close()
        alice = Gateway(address, auth=JupyterHubAuth(api_token=alice_notebook[2]))
        try:
            assert [c.name for c in alice.list_clusters()] == [self.alice_cluster]
            alice.stop_cluster(self.alice_cluster)
        finally:
            alice.close()
