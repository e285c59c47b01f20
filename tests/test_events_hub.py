"""Events on the real embedded facility (issue 19): `af event create` makes participants, their hub
group and the handout; a participant logs in with the handout's password, finds the materials
(pulled by nbgitpuller in their server, edits kept), is held to the event's allowance and refused
outside its window; `af event end` stops their servers and closes their logins."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

import facility
from facility import event_materials
from facility.accounts import remove_account
from tests.conftest import StartFacility
from tests.event_helpers import create_event, handout_logins, landing_of, pull_through_landing, window
from tests.harness import HubSession, RunningFacility, embedded_raw, post_login
from tests.supervision import wait_for

pytestmark = [
    pytest.mark.side_facility,  # its own facility, on the worker with fewer minutes (tests/conftest.py)
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
SPAWN = {"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"}


@pytest.fixture(scope="module")
def running(start_facility: StartFacility) -> RunningFacility:
    raw = embedded_raw()
    # olivia organises events (auth.event_organisers): she may create them on the hub's page.
    raw["auth"] = {**raw["auth"], "groups": {"teachers": ["olivia"]}, "event_organisers": ["teachers"]}
    fac = start_facility(raw)
    # Participants meet the facility for the first time: no account or home left by an earlier run.
    for name in ("ws-01", "ws-02", "later-01", "early-01", "early-02", "soon-01", "soon-02"):
        remove_account(name, facility.load(fac.facility_file).auth.unix_accounts)
    return fac


def _admin(running: RunningFacility) -> HubSession:
    return running.login("admin", running.admin_password)


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("course")
    (folder / "welcome.ipynb").write_text(json.dumps(NOTEBOOK))
    (folder / "data").mkdir()
    (folder / "data" / "readme.txt").write_text("first version\n")
    return folder


@pytest.fixture(scope="module")
def workshop(running: RunningFacility, materials: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open event `ws` with two participants, one core each, the coffea image, local materials."""
    tmp = tmp_path_factory.mktemp("ws")
    made = create_event(running, tmp, "ws", *window(-1, 120), "--participants", "2",
                        "--max", "cores=1", "--max", "worker_cores=1", "--image", "coffea-2026",
                        "--materials", str(materials))  # fmt: skip
    assert "Event ws: 2 participants" in made.stdout, made.stdout
    return tmp


def test_create_refuses_bad_and_taken_names(running: RunningFacility, tmp_path: Path) -> None:
    times = window(-1, 60)
    bad = create_event(running, tmp_path, "bad", *times, "--participants", "ok,a;touch /tmp/x", check=False)
    assert bad.returncode == 2, bad.stderr
    assert "participant 'a;touch' cannot be a username: use 1-64 letters, digits and . _ @ -" in bad.stderr
    taken = create_event(running, tmp_path, "taken", *times, "--participants", "zoe,admin", check=False)
    assert taken.returncode == 1 and "admin already has a login on this facility" in taken.stderr, taken.stderr
    _admin(running).api("POST", "/users/hubonly")  # a hub user without a login of its own
    hub_user = create_event(running, tmp_path, "taken", *times, "--participants", "hubonly", check=False)
    assert hub_user.returncode == 1 and "hubonly is already a user of the hub" in hub_user.stderr, hub_user.stderr
    name = create_event(running, tmp_path, "Bad Name", *times, "--participants", "2", check=False)
    assert name.returncode == 2 and "'Bad Name' cannot be an event name" in name.stderr
    # Nothing of the refused events was made.
    assert "zoe" not in running.af("user", "list").stdout.split()
    assert not [line for line in running.af("event", "list").stdout.splitlines() if line.startswith(("bad", "taken"))]


def test_handout_and_hub_group(running: RunningFacility, workshop: Path) -> None:
    logins = handout_logins(workshop, "ws")
    assert sorted(logins) == ["ws-01", "ws-02"] and all(len(p) == 16 for p in logins.values())
    for suffix in ("csv", "html"):
        handout = workshop / "ws-handout" / f"ws-logins.{suffix}"
        assert stat.S_IMODE(handout.stat().st_mode) == 0o600
    sheet = (workshop / "ws-handout" / "ws-logins.html").read_text()
    assert all(p in sheet for p in logins.values()) and running.url in sheet
    group = _admin(running).api("GET", "/groups/event-ws").json()
    assert sorted(group["users"]) == ["ws-01", "ws-02"]
    shown = running.af("event", "show", "ws").stdout
    assert "now:          open" in shown and "'max': {'cores': 1, 'worker_cores': 1}" in shown


def test_participant_logs_in_finds_materials_and_keeps_edits(
    running: RunningFacility, workshop: Path, materials: Path
) -> None:
    password = handout_logins(workshop, "ws")["ws-01"]
    session = HubSession.login(running.url, "ws-01", password)
    me = session.api("GET", "/users/ws-01").json()
    assert me["groups"] == ["event-ws"]  # kept by the login (manage_groups)

    # Outside the event's allowance: two cores are refused with the range it allows.
    refused = session.post_spawn_form({**SPAWN, "cores": "2"})
    assert "cores: 2 is out of range; choose between 1 and 1" in refused.text, refused.text[-1500:]
    assert session.server() is None
    started = time.monotonic()
    reply = session.post_spawn_form(SPAWN)
    assert reply.status_code == 200, reply.text[-1500:]
    server = session.wait_ready()
    spawn_seconds = time.monotonic() - started
    url, headers = f"{running.url}{server['url']}", {"Authorization": f"token {session.token()}"}
    try:
        page = landing_of(url, headers)
        assert "repo=af-hub%3A%2F%2Fevents%2Fws.git" in page and "targetpath=ws" in page, page
        pull_through_landing(running, page, headers)
        assert _names(url, headers, "ws") == ["data", "welcome.ipynb"]
        assert _text(url, headers, "ws/data/readme.txt") == "first version\n"

        # The participant edits a file; the instructor publishes a new version; the next pull keeps the edit.
        put = requests.put(
            f"{url}api/contents/ws/data/readme.txt",
            headers=headers,
            json={"type": "file", "format": "text", "content": "my notes\n"},
            timeout=30,
        )
        assert put.status_code == 200, put.text
        (materials / "data" / "readme.txt").write_text("second version\n")
        (materials / "part2.ipynb").write_text(json.dumps(NOTEBOOK))
        published = running.af("event", "publish", "ws")
        assert "Published" in published.stdout and "participants get it when they next open" in published.stdout
        pull_through_landing(running, page, headers)
        assert _names(url, headers, "ws") == ["data", "part2.ipynb", "welcome.ipynb"]
        assert _text(url, headers, "ws/data/readme.txt") == "my notes\n"
    finally:
        session.stop_server()
    print(f"participant spawn: {spawn_seconds:.1f} s")


def _names(url: str, headers: dict[str, str], folder: str) -> list[str]:
    listing = requests.get(f"{url}api/contents/{folder}", headers=headers, timeout=30)
    assert listing.status_code == 200, listing.text
    return sorted(item["name"] for item in listing.json()["content"])


def _text(url: str, headers: dict[str, str], path: str) -> str:
    return requests.get(f"{url}api/contents/{path}", headers=headers, timeout=30).json()["content"]


def test_refused_before_the_start(running: RunningFacility, tmp_path: Path) -> None:
    create_event(running, tmp_path, "later", *window(60, 120), "--participants", "1")
    password = handout_logins(tmp_path, "later")["later-01"]
    reply = post_login(running, "later-01", password)
    assert reply.status_code == 403
    assert "The event &#39;later&#39; starts at" in reply.text or "The event 'later' starts at" in reply.text
    assert "you can log in from then." in reply.text
    assert post_login(running, "later-01", password + "x").status_code == 403  # a wrong password says nothing of it
    # Nor can a server be started for the participant (here by an admin, through the REST API).
    spawn = _admin(running).api("POST", "/users/later-01/server", json={"backend": "local", "cores": 1})
    assert spawn.status_code == 403 and "Cannot start your server: The event 'later' starts at" in spawn.text


def _gateway(running: RunningFacility, session: HubSession) -> Gateway:
    return Gateway(running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=session.token()))


def test_participants_clusters_are_held_to_the_event(running: RunningFacility, workshop: Path) -> None:
    session = HubSession.login(running.url, "ws-01", handout_logins(workshop, "ws")["ws-01"])
    with _gateway(running, session) as gateway:
        # The gateway's options for a participant are narrowed to the event's allowance. (Not through
        # a refused new_cluster: the half-made cluster's __del__ blocks the client's loop thread.)
        options = gateway.cluster_options()
        with pytest.raises(ValueError, match="worker_cores must be <= 1"):
            options.worker_cores = 2
        cluster = gateway.new_cluster(worker_cores=1, shutdown_on_close=False)
        gateway.stop_cluster(cluster.name)


def test_end_stops_servers_and_clusters_and_refuses_logins(running: RunningFacility, workshop: Path) -> None:
    password = handout_logins(workshop, "ws")["ws-02"]
    session = HubSession.login(running.url, "ws-02", password)
    assert session.post_spawn_form(SPAWN).status_code == 200
    session.wait_ready()
    gateway = _gateway(running, session)
    cluster = gateway.new_cluster(shutdown_on_close=False)
    started = time.monotonic()
    ended = running.af("event", "end", "ws")
    end_seconds = time.monotonic() - started
    assert "Event ws ended at" in ended.stdout and "1 servers stopped" in ended.stdout, ended.stdout
    assert session.server() is None
    # The cluster stops with the server (hub_config.cluster_lifetime); no new one starts.
    wait_for(lambda: cluster.name not in {c.name for c in gateway.list_clusters()}, "ws-02's cluster to stop", 30)
    with pytest.raises(Exception, match="The event 'ws' ended at"):
        gateway.new_cluster(shutdown_on_close=False)
    gateway.close()
    reply = post_login(running, "ws-02", password)
    assert reply.status_code == 403 and "its accounts are closed." in reply.text
    # The session from before the end cannot start a server again.
    again = session.post_spawn_form(SPAWN)
    assert "Cannot start your server: The event" in again.text and "ended at" in again.text, again.text[-1500:]
    assert session.server() is None
    assert "ended at" in running.af("event", "list").stdout
    print(f"af event end: {end_seconds:.1f} s")


@pytest.mark.parametrize(("path", "status"), [("info/refs", 200), ("HEAD", 200), ("config", 404)])
def test_the_hub_serves_only_the_materials_repository(
    running: RunningFacility, workshop: Path, path: str, status: int
) -> None:
    assert requests.get(f"{running.url}/hub/events/ws.git/{path}", timeout=30).status_code == status
    assert requests.get(f"{running.url}/hub/events/none.git/HEAD", timeout=30).status_code == 404


def test_handout_again_gives_new_passwords(running: RunningFacility, tmp_path: Path) -> None:
    create_event(running, tmp_path, "again", *window(-1, 60), "--participants", "1")
    old = handout_logins(tmp_path, "again")["again-01"]
    made = running.af("event", "handout", "again", "--out", str(tmp_path / "again-handout"))
    assert "New passwords for the 1 participants of again" in made.stdout
    new = handout_logins(tmp_path, "again")["again-01"]
    assert new != old
    assert post_login(running, "again-01", old).status_code == 403
    assert post_login(running, "again-01", new).status_code == 302


def test_prewarm_starts_servers_before_the_start(running: RunningFacility, tmp_path: Path) -> None:
    create_event(running, tmp_path, "soon", *window(10, 120), "--participants", "2")
    warmed = running.af("event", "prewarm", "soon", "--count", "1", "--timeout", "180")
    assert "Pre-warmed soon: 1 servers running" in warmed.stdout, warmed.stdout + warmed.stderr
    admin = _admin(running)
    assert admin.api("GET", "/users/soon-01").json()["servers"][""]["ready"] is True
    assert admin.api("GET", "/users/soon-02").json()["servers"] == {}  # only the first, as asked
    # Its participants still log in from the start only.
    assert post_login(running, "soon-01", handout_logins(tmp_path, "soon")["soon-01"]).status_code == 403
    running.af("event", "end", "soon")


def test_prewarm_too_early_is_refused_in_words(running: RunningFacility, tmp_path: Path) -> None:
    create_event(running, tmp_path, "far", *window(90, 180), "--participants", "1")
    refused = running.af("event", "prewarm", "far", check=False)
    assert refused.returncode == 2
    assert "not pre-warming far: The event 'far' starts at" in refused.stderr
    assert "its servers can be started from" in refused.stderr and "Traceback" not in refused.stderr
    assert _admin(running).api("GET", "/users/far-01").json()["servers"] == {}


def test_a_prewarmed_participant_lands_in_the_running_server(running: RunningFacility, tmp_path: Path) -> None:
    create_event(running, tmp_path, "early", *window(-1, 60), "--participants", "2")
    running.af("event", "prewarm", "early", "--count", "1", "--timeout", "180")
    passwords = handout_logins(tmp_path, "early")
    # The first login of a pre-warmed participant goes straight into the server (its first page pulls
    # the materials, then opens JupyterLab); of the other, to the spawn form.
    begun = time.monotonic()
    warm = HubSession.login(running.url, "early-01", passwords["early-01"])
    landed = warm.http.get(f"{running.url}/hub/", timeout=60)
    login_to_server = time.monotonic() - begun
    assert landed.status_code == 200 and landed.url.startswith(f"{running.url}/user/early-01/"), landed.url
    cold = HubSession.login(running.url, "early-02", passwords["early-02"])
    assert "/hub/spawn" in cold.http.get(f"{running.url}/hub/", timeout=60).url
    print(f"pre-warmed participant: login to their server's first page in {login_to_server:.2f} s")
    running.af("event", "end", "early")


def test_the_instructors_page_is_theirs_and_an_admins_only(running: RunningFacility, tmp_path: Path) -> None:
    running.password_of("tina")  # a hub user with a login, who will teach
    create_event(running, tmp_path, "lesson", *window(-1, 60), "--participants", "1", "--instructor", "tina")
    try:
        tina = running.login("tina")
        page = tina.http.get(f"{running.url}/hub/events/lesson", timeout=30)
        assert page.status_code == 200 and 'data-participant="lesson-01"' in page.text, page.text[-2000:]
        assert "not started" in page.text
        assert 'href="/hub/events"' in tina.http.get(f"{running.url}/hub/home", timeout=30).text  # her nav link
        assert '<a href="/hub/events/lesson">lesson</a>' in tina.http.get(f"{running.url}/hub/events", timeout=30).text
        other = running.login("tom")  # a user of the facility who teaches nothing
        refused = other.http.get(f"{running.url}/hub/events/lesson", timeout=30)
        assert refused.status_code == 403 and "for the event&#39;s instructors" in refused.text, refused.text[-2000:]
        assert other.http.get(f"{running.url}/hub/events", timeout=30).status_code == 403
        assert 'href="/hub/events"' not in other.http.get(f"{running.url}/hub/home", timeout=30).text
        assert tina.http.get(f"{running.url}/hub/events/nosuch", timeout=30).status_code == 404
        # Not a participant of hers: refused in words, nothing done.
        reply = tina.http.post(
            f"{running.url}/hub/events/lesson",
            data={"action": "stop", "participant": "tom", "_xsrf": tina.xsrf},
            timeout=30,
        )
        assert reply.status_code == 400 and "&#39;tom&#39; is not a participant of lesson" in reply.text
        # Stop all with nothing running: back to the page, which says so (a reload repeats nothing).
        stopped = tina.http.post(
            f"{running.url}/hub/events/lesson", data={"action": "stop-all", "_xsrf": tina.xsrf}, timeout=30
        )
        assert stopped.status_code == 200 and stopped.url.endswith("/hub/events/lesson?done=stopped-all&count=0")
        assert "Stopping 0 servers of lesson." in stopped.text
        admin = _admin(running).http.get(f"{running.url}/hub/events/lesson", timeout=30)
        assert admin.status_code == 200 and 'href="/hub/events"' in admin.text  # and the admin's nav link
    finally:
        running.af("event", "end", "lesson")


def test_an_instructor_opens_and_stops_a_participants_server_in_a_browser(
    running: RunningFacility, tmp_path: Path
) -> None:
    """ivy teaches `class`; one participant's server runs (pre-warmed). In Chromium she sees it
    running and the other not started, opens it (her JupyterHub share of that one server), publishes
    changed materials and stops it. Screenshots in test-artifacts/instructor/."""
    from tests.browser import chromium_page, contrast_of, emptied_artifacts, log_in, sync_api_or_skip

    expect = sync_api_or_skip().expect
    shots = emptied_artifacts("instructor")
    course = tmp_path / "course"
    course.mkdir()
    (course / "welcome.ipynb").write_text(json.dumps(NOTEBOOK))
    password = running.password_of("ivy")
    create_event(running, tmp_path, "class", *window(-1, 60), "--participants", "2", "--instructor", "ivy",
                 "--materials", str(course))  # fmt: skip
    try:
        running.af("event", "prewarm", "class", "--count", "1", "--timeout", "180")
        with chromium_page(1440, 900) as page:
            log_in(page, running.url, "ivy", password)
            page.goto(f"{running.url}/hub/events")
            page.get_by_role("link", name="class").click()
            table = page.locator("#af-event-table")
            running_row, idle_row = (table.locator(f'tr[data-participant="class-0{i}"]') for i in (1, 2))
            expect(running_row.locator(".af-state")).to_have_text("running")
            expect(idle_row.locator(".af-state")).to_have_text("not started")
            assert idle_row.get_by_role("button", name="Open").count() == 0
            assert contrast_of(running_row.locator(".af-state")) >= 4.5
            page.screenshot(path=shots / "01-participants.png", full_page=True)

            # Open: a new tab with the participant's JupyterLab, reached through her share.
            with page.context.expect_page() as opened:
                running_row.get_by_role("button", name="Open").click()
            lab = opened.value
            # JupyterHub asks whoever opens another user's server to authorize it (its own OAuth page).
            lab.get_by_role("button", name="Authorize").click(timeout=120_000)
            lab.wait_for_url(re.compile(r"/user/class-01/lab"), timeout=120_000)
            lab.wait_for_selector(".jp-DirListing-content", timeout=120_000)
            lab.screenshot(path=shots / "02-participants-jupyterlab.png")
            lab.close()
            shares = _admin(running).api("GET", "/users/ivy/shared").json()["items"]
            assert [s["scopes"] for s in shares] == [["access:servers!server=class-01/"]], shares  # that one server

            # Changed materials, published again from the page.
            (course / "exercise.ipynb").write_text(json.dumps(NOTEBOOK))
            page.get_by_role("button", name="Publish the materials again").click()
            expect(page.locator("#af-event-said")).to_contain_text("participants get it the next time")
            repo = event_materials.repo_path(running.state_dir, "class")
            files = subprocess.run(["git", "--git-dir", str(repo), "ls-tree", "--name-only", "HEAD"],
                                   capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
            assert files == ["exercise.ipynb", "welcome.ipynb"], files

            # Stop, after a question.
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator('tr[data-participant="class-01"]').get_by_role("button", name="Stop").click()
            expect(page.locator("#af-event-said")).to_contain_text("class-01's server is stopping")
            wait_for(lambda: _admin(running).api("GET", "/users/class-01").json()["servers"] == {}, "class-01 stopped")
            page.reload()
            expect(page.locator('tr[data-participant="class-01"] .af-state')).to_have_text("stopped")
            page.emulate_media(color_scheme="dark")
            page.reload()
            page.screenshot(path=shots / "03-after-stop-dark.png", full_page=True)
            assert contrast_of(page.locator("#af-event-table td")) >= 4.5
        running.af("event", "end", "class")
        assert _admin(running).api("GET", "/users/ivy/shared").json()["items"] == []  # revoked at the end
    finally:
        running.af("event", "end", "class")


def test_an_event_code_with_a_new_name_makes_a_participant_once(running: RunningFacility, tmp_path: Path) -> None:
    """`--code`: a new name with the event's code joins the event (its group, its window); the same
    name with the code again, a name someone has, a wrong code, and the code of an event that has not
    begun are each refused in words; no account changes hands."""
    create_event(running, tmp_path, "drop-in", *window(-1, 60), "--participants", "1", "--code", "river-stone-42")
    create_event(
        running, tmp_path, "tomorrow", *window(60 * 20, 60 * 22), "--participants", "1", "--code", "owl-seven-7"
    )
    try:
        joined = post_login(running, "ana", "river-stone-42")
        assert joined.status_code == 302, joined.text[-2000:]
        assert "ana" in running.af("event", "show", "drop-in").stdout
        assert "ana" in _admin(running).api("GET", "/groups/event-drop-in").json()["users"]
        again = post_login(running, "ana", "river-stone-42")  # someone else choosing the same name
        assert again.status_code == 403, again.text[-2000:]
        running.password_of("olga")  # a user with her own login
        assert post_login(running, "olga", "river-stone-42").status_code == 403  # the code does not open it
        _admin(running).api("POST", "/users/hubonly2")  # a hub user without a login of its own
        taken = post_login(running, "hubonly2", "river-stone-42")
        assert taken.status_code == 403 and "The name &#39;hubonly2&#39; is taken" in taken.text, taken.text[-2000:]
        assert "hubonly2" not in running.af("event", "show", "drop-in").stdout
        wrong = post_login(running, "bea", "river-stone-43")
        assert wrong.status_code == 403 and "bea" not in running.af("event", "show", "drop-in").stdout
        early = post_login(running, "cem", "owl-seven-7")
        assert early.status_code == 403 and "The event &#39;tomorrow&#39; starts at" in early.text, early.text[-2000:]
    finally:
        running.af("event", "end", "drop-in")
        running.af("event", "end", "tomorrow")


def test_after_the_end_homes_are_archived_for_the_instructor_and_removed(
    running: RunningFacility, tmp_path: Path
) -> None:
    """`af event archive`: refused before the end; after it the participants' logins are gone, their
    homes are in one archive (0600) that the instructor downloads from the event's page and nobody
    else does, and the homes and Unix accounts are removed."""
    import tarfile

    from facility.accounts import lookup
    from facility.credentials import CredentialStore, credentials_path
    from facility.event_archive import archive_path

    running.password_of("ursula")
    create_event(running, tmp_path, "arch", *window(-1, 60), "--participants", "2", "--instructor", "ursula")
    accounts = facility.load(running.facility_file).auth.unix_accounts
    try:
        running.af("event", "prewarm", "arch", "--count", "1", "--timeout", "180")  # arch-01 gets a home
        early = running.af("event", "archive", "arch", check=False)
        assert early.returncode == 2 and "arch has not ended" in early.stderr, early.stderr
        running.af("event", "end", "arch")
        home = lookup("arch-01", accounts).home
        (home / "notes.txt").write_text("my results\n")
        done = running.af("event", "archive", "arch")
        assert "2 logins disabled; 1 homes archived" in done.stdout, done.stdout
        path = archive_path(running.state_dir, "arch")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with tarfile.open(path) as tar:
            names = tar.getnames()
            assert "arch-01/notes.txt" in names and "arch-01/examples/first_steps.ipynb" in names, names
            assert tar.extractfile("arch-01/notes.txt").read() == b"my results\n"
        assert not any(n.startswith("arch-02") for n in names)
        assert lookup("arch-01", accounts) is None and not home.exists()  # account and home removed
        logins = CredentialStore(credentials_path(running.state_dir))
        assert not logins.has("arch-01") and not logins.has("arch-02")

        ursula = running.login("ursula")
        page = ursula.http.get(f"{running.url}/hub/events/arch", timeout=30)
        assert "download them" in page.text and "/hub/events/arch/homes.tar.gz" in page.text
        download = ursula.http.get(f"{running.url}/hub/events/arch/homes.tar.gz", timeout=60)
        assert download.status_code == 200 and download.content == path.read_bytes()
        assert "arch-homes.tar.gz" in download.headers["Content-Disposition"]
        other = running.login("tom").http.get(f"{running.url}/hub/events/arch/homes.tar.gz", timeout=30)
        assert other.status_code == 403 and other.content != path.read_bytes()
    finally:
        running.af("event", "end", "arch")


def _typed_form(session: HubSession, **values: str) -> dict[str, str]:
    start, end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=m) for m in (-1, 60))
    form = {"start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M"), "_xsrf": session.xsrf}
    return {**form, **values}


def test_an_organiser_creates_an_event_on_the_hub_page(running: RunningFacility, tmp_path: Path) -> None:
    """olivia (auth.event_organisers) fills /hub/new-event in Chromium and gets the handout; a
    participant logs in with a password from it. Refused values come back in words with the form as
    typed; a user who organises nothing is refused. Screenshots in test-artifacts/new-event/."""
    from tests.browser import chromium_page, emptied_artifacts, log_in, sync_api_or_skip

    expect = sync_api_or_skip().expect
    shots = emptied_artifacts("new-event")
    olivia = running.login("olivia")
    url = f"{running.url}/hub/new-event"
    refused = running.login("tom").http.get(url, timeout=30)
    assert refused.status_code == 403 and "for the facility&#39;s admins and its event organisers" in refused.text
    local = olivia.http.post(url, data=_typed_form(olivia, name="local", participants="2", materials=str(tmp_path)))
    assert local.status_code == 400 and "materials: give a git URL here" in local.text, local.text[-2000:]
    assert 'value="local"' in local.text  # the form as typed
    bad = olivia.http.post(url, data=_typed_form(olivia, name="Bad Name", participants="2"), timeout=30)
    assert bad.status_code == 400 and "Bad Name" in bad.text and "af-event-problem" in bad.text
    try:
        with chromium_page(1280, 1000) as page:
            log_in(page, running.url, "olivia", running.password_of("olivia"))
            page.goto(f"{running.url}/hub/events")
            page.locator("#af-new-event-link").click()
            form = _typed_form(olivia)
            page.fill("#af-event-name", "made")
            page.fill("#af-event-start", form["start"])
            page.fill("#af-event-end", form["end"])
            page.fill("#af-event-participants", "2")
            page.check("#af-event-backend-local")
            page.fill("#af-event-max-cores", "1")
            page.fill("#af-event-instructors", "olivia")
            page.fill("#af-event-archive", "7")
            page.screenshot(path=shots / "01-new-event-form.png", full_page=True)
            page.click("#af-new-event-submit")
            expect(page.locator(".notice")).to_contain_text("The event made is created")
            page.screenshot(path=shots / "02-handout.png", full_page=True)
            cards = page.locator(".card")
            expect(cards).to_have_count(2)
            name, password = (
                cards.first.locator(".participant").inner_text(),
                cards.first.locator(".password").inner_text(),
            )
        assert name == "made-01" and post_login(running, name, password).status_code == 302
        shown_event = running.af("event", "show", "made").stdout
        assert "made-01" in shown_event and "made-02" in shown_event and "cores" in shown_event, shown_event
        assert "archived 7 days after the end" in shown_event
        assert sorted(_admin(running).api("GET", "/groups/event-made").json()["users"]) == ["made-01", "made-02"]
        assert "made" in olivia.http.get(f"{running.url}/hub/events", timeout=30).text  # she teaches it now
    finally:
        running.af("event", "end", "made", check=False)


def test_the_keeper_archives_an_event_once_its_grace_period_has_passed(
    running: RunningFacility, tmp_path: Path
) -> None:
    """`--archive-after-days 0`: once the event closes by its end time, `af event keep` (which `af up`
    supervises) stops the participant's server still running, archives the homes and removes them;
    a second look does nothing more."""
    from facility.accounts import lookup
    from facility.event_archive import archive_path
    from tests.supervision import supervisor

    assert "RUNNING" in supervisor(running, "status", "event-keeper")  # af up runs the keeper
    create_event(running, tmp_path, "brief", *window(-1, 0.5), "--participants", "1", "--archive-after-days", "0")
    running.af("event", "prewarm", "brief", "--timeout", "180")  # brief-01 runs past the end
    accounts = facility.load(running.facility_file).auth.unix_accounts
    path = archive_path(running.state_dir, "brief")
    try:
        assert not running.af("event", "keep", "--once").stdout and not path.exists()  # not closed yet

        def ended() -> bool:
            listed = running.af("event", "list").stdout.splitlines()
            return "ended at" in next(line for line in listed if line.startswith("brief\t"))

        wait_for(ended, "the end of brief", timeout=120)

        def archived() -> bool:
            running.af("event", "keep", "--once")
            return path.exists()

        wait_for(archived, "the keeper's archive", timeout=120)
        assert _admin(running).api("GET", "/users/brief-01").json()["servers"] == {}  # stopped first
        assert lookup("brief-01", accounts) is None
        assert "homes:        archived" in running.af("event", "show", "brief").stdout
        again = running.af("event", "keep", "--once")
        assert again.stdout == "", again.stdout  # archived once
    finally:
        running.af("event", "end", "brief")
