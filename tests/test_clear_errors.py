"""Bad input and missing pieces give clear errors: usernames, absent programs, a gateway that is down."""

from __future__ import annotations

import json
import socket

import pytest

from af.components import MissingDependency, find_program
from dask_backends.client import GatewayUnavailable, gateway
from tests.harness import HubSession, RunningFacility


@pytest.mark.parametrize("username", ["a;touch /tmp/x", "$(id)", "../etc", "bob smith", "-rf"])
def test_usernames_with_metacharacters_cannot_log_in(embedded: RunningFacility, username: str) -> None:
    session = HubSession(embedded.url, username)
    session.http.get(f"{embedded.url}/hub/login", timeout=30)
    reply = session.http.post(
        f"{embedded.url}/hub/login",
        data={"username": username, "password": embedded.user_password, "_xsrf": session.xsrf},
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
