"""Bad input and missing pieces give clear errors: usernames, absent programs, a gateway that is down."""

from __future__ import annotations

import json
import socket

import pytest

from af.components import MissingDependency, find_program
from dask_backends.client import GatewayUnavailable, gateway
from tests.batch_helpers import spawn_outcome, wait_gone
from tests.harness import HubSession, RunningFacility, execute_in_kernel


@pytest.mark.parametrize("username", ["a;touch /tmp/x", "$(id)", "../etc", "bob smith", "-rf"])
def test_usernames_with_metacharacters_cannot_log_in(workshop: RunningFacility, username: str) -> None:
    # The shared password (opted into here) admits any other name: the name alone is refused.
    session = HubSession(workshop.url, username)
    session.http.get(f"{workshop.url}/hub/login", timeout=30)
    reply = session.http.post(
        f"{workshop.url}/hub/login",
        data={"username": username, "password": workshop.shared_password, "_xsrf": session.xsrf},
        allow_redirects=False,
        timeout=30,
    )
    assert reply.status_code == 403 and "Invalid username or password" in reply.text
    assert session.api("GET", f"/users/{username}").status_code in (403, 404)


def test_plain_and_email_usernames_log_in(embedded: RunningFacility) -> None:
    for name in ("kim", "kim.lee@example.org"):
        assert embedded.login(name).api("GET", f"/users/{name}").json()["name"] == name


def test_missing_program_names_what_to_install() -> None:
    with pytest.raises(
        MissingDependency, match=r"no-such-proxy is not installed \(npm package x\); run `make install`"
    ):
        find_program("no-such-proxy", "npm package x")


def test_gateway_that_is_down_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AF_DASK_GATEWAYS", json.dumps({"local": f"http://127.0.0.1:{closed}"}))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    with pytest.raises(
        GatewayUnavailable, match=r"dask-gateway of backend 'local' at http://127.0.0.1:\d+ does not answer"
    ):
        gateway("local")


def test_unknown_backend_lists_the_ones_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AF_DASK_GATEWAYS", json.dumps({"local": "http://127.0.0.1:1"}))
    with pytest.raises(ValueError, match="no dask-gateway for backend 'gpu'; backends you may use: local"):
        gateway("gpu")


def test_a_user_named_like_the_facility_group_gets_a_server(embedded: RunningFacility) -> None:
    # Hub user `users` mapped to `af-users`, the facility's Unix group: useradd failed raw.
    session = embedded.login("users")
    assert session.post_spawn_form({"backend": "local"}).status_code == 200
    server = session.wait_ready()
    try:
        account = execute_in_kernel(
            f"{embedded.url}{server['url']}", session.token(), "import getpass; print(getpass.getuser())"
        )
        assert account.strip().startswith("af-users_"), account
    finally:
        session.stop_server()


def test_lists_and_inapplicable_values_are_refused_by_the_hub(embedded: RunningFacility) -> None:
    session = embedded.login("vera")
    for options, message in [
        ({"backend": "local", "cores": [1, 2]}, "cores: give one value, not a list"),  # was: 1
        ({"backend": ["local"]}, "backend: give one value, not a list"),
        ({"backend": "local", "walltime_hours": 3}, "walltime_hours: backend 'local' has no wall time to choose"),
    ]:
        reply = session.api("POST", "/users/vera/server", json=options)
        if reply.status_code != 400:  # the hub answers before the spawn ends; its outcome follows
            outcome = spawn_outcome(session, timeout=60)
            assert outcome.get("failed"), (options, outcome)
            reply_message = outcome.get("message", "")
        else:
            reply_message = reply.json()["message"]
        assert message in reply_message, (options, reply_message)
        wait_gone(session)
    # The form: a field sent twice is refused the same way, on the form page.
    reply = session.http.post(
        f"{embedded.url}/hub/spawn", data={"backend": "local", "cores": ["1", "2"], "_xsrf": session.xsrf}, timeout=60
    )
    assert "cores: sent 2 times; give one value" in reply.text
    assert session.server() is None
