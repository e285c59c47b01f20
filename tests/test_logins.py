"""The embedded login: an own password per user (`af user`), the shared password only as an opt-in
that never opens an account with its own credential, and throttled failed logins, counted across a
hub restart. Real hubs."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
import requests

from facility.credentials import credentials_path
from tests.browser import chromium_page, log_in
from tests.conftest import StartFacility
from tests.harness import HubSession, RunningFacility, embedded_raw, post_login
from tests.supervision import supervisor, wait_for

LOCKOUT_SECONDS = 4  # auth.login_throttle.lockout_seconds of this module's workshop (default 30)
THROTTLED = re.compile(r"Too many failed attempts (for this user|from your address); try again in (\d+) s")


@pytest.fixture(scope="module")
def workshop(start_facility: StartFacility) -> RunningFacility:
    """A workshop facility (auth.shared_password) whose locked names and addresses wait only a few seconds."""
    raw = embedded_raw()
    auth = {**raw["auth"], "shared_password": True, "login_throttle": {"lockout_seconds": LOCKOUT_SECONDS}}
    return start_facility({**raw, "auth": auth})


def _logs_in(fac: RunningFacility, username: str, password: str) -> bool:
    reply = post_login(fac, username, password)
    assert reply.status_code in (302, 403), (reply.status_code, reply.text[-300:])
    return reply.status_code == 302


def _admin(fac: RunningFacility) -> HubSession:
    return fac.login("admin", fac.admin_password)


def test_af_user_add_list_reset_remove(embedded: RunningFacility) -> None:
    added = embedded.af("user", "add", "Quinn")  # the hub lower-cases names at login
    assert "shown once" in added.stdout
    password = added.stdout.strip().splitlines()[-1]
    assert "quinn" in embedded.af("user", "list").stdout.split()
    assert _logs_in(embedded, "quinn", password)
    assert not _logs_in(embedded, "quinn", password + "x")

    again = embedded.af("user", "add", "quinn", check=False)
    assert again.returncode == 1 and "quinn already has a login; `af user reset quinn`" in again.stderr

    # Only a hash is kept, in a file only the facility's account can read.
    store = credentials_path(embedded.state_dir)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600 and store.stat().st_uid == os.geteuid()
    assert password not in store.read_text() and "scrypt$" in store.read_text()

    new_password = embedded.af("user", "reset", "quinn").stdout.strip().splitlines()[-1]
    assert new_password != password
    assert not _logs_in(embedded, "quinn", password)
    assert _logs_in(embedded, "quinn", new_password)

    assert "Removed the login of quinn" in embedded.af("user", "remove", "quinn").stdout
    assert not _logs_in(embedded, "quinn", new_password)
    assert "quinn" not in embedded.af("user", "list").stdout.split()
    gone = embedded.af("user", "reset", "quinn", check=False)
    assert gone.returncode == 1 and "quinn has no login; `af user add quinn` creates one" in gone.stderr

    bad = embedded.af("user", "add", "a;touch /tmp/x", check=False)
    assert bad.returncode == 2 and "cannot be a username: use 1-64 letters, digits and . _ @ -" in bad.stderr


def test_admin_logs_in_with_the_password_af_up_made(embedded: RunningFacility) -> None:
    assert "admin" in embedded.af("user", "list").stdout.split()
    assert _admin(embedded).api("GET", "/users/admin").json()["admin"] is True


def test_without_the_opt_in_no_shared_password_and_no_new_names(embedded: RunningFacility) -> None:
    # The facility still has a generated shared password (runtime.json): it opens nothing here,
    # and a name without a login is not created (allow_all is off).
    assert not _logs_in(embedded, "newcomer", embedded.shared_password)
    embedded.password_of("olga")
    assert not _logs_in(embedded, "olga", embedded.shared_password)
    assert _admin(embedded).api("GET", "/users/newcomer").status_code == 404


def test_shared_password_cannot_take_over_an_account_with_its_own_credential(workshop: RunningFacility) -> None:
    own = workshop.password_of("alice")
    assert not _logs_in(workshop, "alice", workshop.shared_password)  # was: impersonation
    assert not _logs_in(workshop, "admin", workshop.shared_password)
    assert _logs_in(workshop, "alice", own)
    # A workshop's guests: any other name with the shared password.
    assert workshop.login("guest-1", workshop.shared_password).api("GET", "/users/guest-1").json()["name"] == "guest-1"
    assert _admin(workshop).api("GET", "/users/guest-1").json()["admin"] is False


def test_failed_logins_still_count_after_a_hub_restart(workshop: RunningFacility) -> None:
    # Before rita's and the address's tests: 5 failures here leave the address below its 20.
    right = workshop.password_of("hal")
    for i in range(4):  # one short of failures_per_user (5)
        assert post_login(workshop, "hal", f"wrong-{i}").status_code == 403
    assert "hub: stopped" in supervisor(workshop, "restart", "hub")
    wait_for(lambda: requests.get(f"{workshop.url}/hub/health", timeout=5).ok, "the restarted hub")
    assert post_login(workshop, "hal", "wrong-4").status_code == 403  # the fifth, counted with the four
    reply = post_login(workshop, "hal", right)
    found = THROTTLED.search(reply.text)
    assert reply.status_code == 429 and found and found.group(1) == "for this user", reply.text[-800:]
    for name in ("login-failures-by-user.json", "login-failures-by-address.json"):
        assert stat.S_IMODE((workshop.state_dir / name).stat().st_mode) == 0o600, name  # names users, addresses
    time.sleep(int(found.group(2)) + 1)
    assert _logs_in(workshop, "hal", right)


def test_twenty_wrong_passwords_then_the_right_one_is_throttled(workshop: RunningFacility) -> None:
    right = workshop.password_of("rita")
    replies = [post_login(workshop, "rita", f"wrong-{i}") for i in range(20)]
    assert [r.status_code for r in replies[:5]] == [403] * 5  # the first failures are plain refusals
    reply = post_login(workshop, "rita", right)
    assert reply.status_code == 429
    found = THROTTLED.search(reply.text)
    assert found and found.group(1) == "for this user" and 0 < int(found.group(2)) <= LOCKOUT_SECONDS, reply.text[-800:]
    assert 'id="login_submit"' in reply.text  # shown on the login page, not an error page
    # The lock is on rita only: another user from the same address logs in.
    assert _logs_in(workshop, "sam", workshop.password_of("sam"))
    time.sleep(int(found.group(2)) + 1)
    assert _logs_in(workshop, "rita", right)


def test_many_failures_from_one_address_throttle_it(workshop: RunningFacility) -> None:
    # Guessing across names: each name fails once, the address collects the failures.
    right = workshop.password_of("uma")
    throttled = None
    for i in range(25):
        reply = post_login(workshop, f"guess-{i}", "wrong-password")
        if reply.status_code == 429:
            throttled = THROTTLED.search(reply.text)
            break
        assert reply.status_code == 403
    assert throttled and throttled.group(1) == "from your address", "never throttled"
    reply = post_login(workshop, "uma", right)
    assert reply.status_code == 429 and "from your address" in reply.text
    time.sleep(int(THROTTLED.search(reply.text).group(2)) + 1)
    assert _logs_in(workshop, "uma", right)


def test_the_login_page_shows_the_wait_in_plain_words(embedded: RunningFacility, artifacts: Path) -> None:
    right = embedded.password_of("wendy")
    for i in range(5):
        assert not _logs_in(embedded, "wendy", f"wrong-{i}")
    with chromium_page(1000, 700) as page:
        log_in(page, embedded.url, "wendy", right)
        message = page.locator(".login_error")
        message.wait_for()
        page.screenshot(path=artifacts / "login-throttled.png")
        assert THROTTLED.search(message.inner_text()), message.inner_text()
        assert page.locator("#login_submit").is_visible()  # the form is still there to try again
