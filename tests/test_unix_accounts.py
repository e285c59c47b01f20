"""Per-user Unix accounts on the local backend (auth.unix_accounts.mode: per-user, the default).

One facility (`af up` as root, token-protected data lake so every user has a token file) serves
the module: alice's and bob's notebooks and Dask clusters run as af-alice and af-bob, and code in
bob's notebook tries, as a curious user would, to read what belongs to alice or to the facility.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_gateway import Gateway, JupyterHubAuth

from facility.accounts import unix_name
from tests.batch_helpers import spawn_outcome
from tests.conftest import StartFacility
from tests.harness import ROOT, HubSession, RunningFacility, embedded_raw, execute_in_kernel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-user accounts are created by root")

SPAWN = {"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"}
COLLIDING_HUB_USER = "mallory"


@pytest.fixture(scope="module")
def fac(start_facility: StartFacility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["data"]["require_token"] = True  # every server gets a token file (BEARER_TOKEN_FILE)
    return start_facility(raw)


class Notebook:
    def __init__(self, session: HubSession, url: str, token: str):
        self.session, self.url, self.token = session, url, token

    def run(self, code: str) -> str:
        return execute_in_kernel(self.url, self.token, code)

    def run_json(self, code: str) -> dict:
        return json.loads(self.run(code).strip().splitlines()[-1])


def _notebook(fac: RunningFacility, username: str) -> Notebook:
    session = fac.login(username)
    reply = session.post_spawn_form(SPAWN)
    assert reply.status_code == 200, reply.text[-500:]
    server = session.wait_ready()
    return Notebook(session, f"{fac.url}{server['url']}", session.token())


@pytest.fixture(scope="module")
def alice(fac: RunningFacility) -> Notebook:
    return _notebook(fac, "alice")


@pytest.fixture(scope="module")
def bob(fac: RunningFacility) -> Notebook:
    return _notebook(fac, "bob")


def _gateway(fac: RunningFacility, session: HubSession) -> Gateway:
    return Gateway(fac.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=session.token()))


@pytest.fixture(scope="module")
def alice_cluster(fac: RunningFacility, alice: Notebook) -> Iterator[tuple[str, list[int]]]:
    """alice's cluster with one worker: its name and the uids of its scheduler and worker."""
    with _gateway(fac, alice.session) as gateway:
        cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
        try:
            cluster.scale(1)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=90)
            uids = [client.run_on_scheduler(os.getuid), *client.run(os.getuid).values()]
            client.close()
            yield cluster.name, uids
        finally:
            cluster.shutdown()


def _uid(hub_name: str) -> int:
    return pwd.getpwnam(unix_name(hub_name)).pw_uid


def test_notebook_runs_as_the_users_own_account(alice: Notebook) -> None:
    seen = alice.run_json(
        "import os, json, stat\n"
        "home = os.environ['HOME']\n"
        "print(json.dumps({'uid': os.getuid(), 'home': home, 'cwd': os.getcwd(), 'user': os.environ['USER'],"
        " 'home_mode': stat.S_IMODE(os.stat(home).st_mode),"
        " 'token': open(os.environ['BEARER_TOKEN_FILE']).read()[:8]}))"
    )
    account = pwd.getpwnam("af-alice")
    assert seen["uid"] == account.pw_uid != 0
    assert seen["home"] == seen["cwd"] == account.pw_dir == "/home/af-alice"
    assert seen["user"] == "af-alice" and seen["home_mode"] == 0o700
    assert seen["token"], "alice cannot read her own token file"


def test_dask_scheduler_and_workers_run_as_the_users_account(alice_cluster: tuple[str, list[int]]) -> None:
    _, uids = alice_cluster
    assert len(uids) == 2 and set(uids) == {_uid("alice")}


@pytest.mark.parametrize("hub_name", ["root", "j.doe@example.org"])
def test_cluster_before_any_notebook_gets_a_prefixed_account(fac: RunningFacility, hub_name: str) -> None:
    """A hub user called root runs as af-root, not uid 0; a name with . and @ gets the hashed name."""
    session = fac.login(hub_name)
    with _gateway(fac, session) as gateway:
        cluster = gateway.new_cluster()
        try:
            with cluster.get_client() as client:
                uid = client.run_on_scheduler(os.getuid)
        finally:
            cluster.shutdown()
    expected = "af-root" if hub_name == "root" else unix_name(hub_name)
    assert "_" in expected or hub_name == "root"
    assert uid == pwd.getpwnam(expected).pw_uid != 0


def test_bob_cannot_read_what_belongs_to_alice_or_the_facility(
    fac: RunningFacility, alice: Notebook, bob: Notebook, alice_cluster: tuple[str, list[int]]
) -> None:
    state = fac.state_dir
    cluster_dir = state / "gateways" / "local" / "clusters" / alice_cluster[0]
    targets = {
        "alice's token file": state / "tokens" / "alice" / "bearer_token",
        "alice's token folder": state / "tokens" / "alice",
        "alice's home": Path("/home/af-alice"),
        "alice's cluster folder": cluster_dir,
        "alice's cluster TLS key": cluster_dir / ".certs" / "dask.pem",
        "alice's scheduler log": cluster_dir / "logs" / "scheduler.log",
        "runtime.json": state / "runtime.json",
        "hub database": state / "jupyterhub.sqlite",
        "gateway database": state / "gateways" / "local" / "gateway.sqlite",
        "hub log": state / "logs" / "hub.log",
        "state folder": state,
        "clusters folder": cluster_dir.parent,
    }
    for what, path in targets.items():
        assert path.exists(), f"{what} ({path}) should exist for this test to mean anything"
    probe = (
        "import json, os\n"
        f"targets = {json.dumps({k: str(v) for k, v in targets.items()})}\n"
        "seen = {}\n"
        "for what, path in targets.items():\n"
        "    try:\n"
        "        os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)\n"
        "        seen[what] = 'read'\n"
        "    except PermissionError:\n"
        "        seen[what] = 'denied'\n"
        "print(json.dumps(seen))"
    )
    assert bob.run_json(probe) == dict.fromkeys(targets, "denied")
    own = {k: v for k, v in alice.run_json(probe).items() if k.startswith("alice's") and k != "alice's home"}
    assert own == dict.fromkeys(own, "read") and len(own) == 5  # her token, cluster folder, key and log


def test_no_facility_secret_is_readable_by_a_user_account(fac: RunningFacility, bob: Notebook) -> None:
    """Every file in the state folder, tried as af-bob: only his own tokens and public material open."""
    files = sorted(str(p) for p in fac.state_dir.rglob("*") if p.is_file() and not p.is_symlink())
    readable = _readable_as("af-bob", files)
    state = fac.state_dir
    # his tokens, the data lake's public material (the examples reach servers over HTTP, not from here)
    allowed = (state / "tokens" / "bob", state / "xrootd")
    opened = [f for f in readable if not any(Path(f).is_relative_to(a) for a in allowed)]
    assert opened == [], f"af-bob can read {opened}"
    secrets = [f for f in readable if Path(f).is_relative_to(state / "xrootd") and not _public_xrootd_file(Path(f))]
    assert secrets == [], f"af-bob can read {secrets}"
    assert str(state / "tokens" / "bob" / "bearer_token") in readable


def test_no_file_in_roots_home_is_readable_by_a_user_account(fac: RunningFacility, bob: Notebook) -> None:
    """The facility's Python and state live outside /root, so `af up` opens nothing there and takes
    back the pass-through entry earlier versions put on it (issue 17): af-bob cannot enter /root, so
    no file below it opens for him. Tried on every file three levels down (the whole tree is large)."""
    acl = subprocess.run(["getfacl", "--omit-header", "--absolute-names", "/root"], capture_output=True, text=True)
    assert "group:af-users:" not in acl.stdout, acl.stdout  # the embedded facility's group
    files = [str(p) for p in _files_below(Path("/root"), depth=3)]
    assert files, "nothing to try below /root"
    assert _readable_as("af-bob", files) == []
    assert _readable_as("af-bob", ["/root/.gitconfig"]) == []  # the file the review read


def _files_below(folder: Path, depth: int) -> list[Path]:
    found: list[Path] = []
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink() and depth > 1:
            found += _files_below(entry, depth - 1)
    return found


PUBLIC_XROOTD_FILES = ("authdb", "host.csr", "host.ext")  # no rules (tokens decide), certificate request


def _public_xrootd_file(path: Path) -> bool:
    # Server configuration, the CA certificate and what goes into the host certificate; never a key.
    return path.suffix == ".cfg" or path.parent.name == "ca" or path.name in PUBLIC_XROOTD_FILES


def _readable_as(account: str, files: list[str]) -> list[str]:
    entry = pwd.getpwnam(account)
    code = (
        "import json, sys\nok = []\n"
        "for f in json.load(sys.stdin):\n"
        "    try:\n        open(f, 'rb').close(); ok.append(f)\n"
        "    except OSError:\n        pass\n"
        "print(json.dumps(ok))"
    )
    result = subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
        + [sys.executable, "-c", code],
        input=json.dumps(files),
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return json.loads(result.stdout)


@pytest.fixture
def colliding_account() -> Iterator[str]:
    """A site account that happens to carry the name af-mallory, not made by the facility."""
    name = unix_name(COLLIDING_HUB_USER)
    subprocess.run(["useradd", "--no-create-home", "--comment", "site account", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


def test_a_colliding_site_account_is_refused(fac: RunningFacility, colliding_account: str) -> None:
    session = fac.login(COLLIDING_HUB_USER)
    session.post_spawn_form(SPAWN)
    outcome = spawn_outcome(session)
    assert outcome.get("failed"), outcome
    assert f"Unix account '{colliding_account}' exists but was not created by the analysis facility" in outcome.get(
        "message", ""
    )
    assert session.server() is None


def test_per_user_accounts_without_root_are_refused(fac: RunningFacility, bob: Notebook) -> None:
    # From bob's notebook: making an account for someone else.
    message = bob.run(
        "from facility.accounts import ensure_account, AccountError\n"
        "from facility.model import UnixAccounts\n"
        "try:\n    ensure_account('eve', UnixAccounts())\n"
        "except AccountError as exc:\n    print(exc)"
    )
    assert "need the facility to run as root" in message and "auth.unix_accounts.mode: shared" in message
    # `af up` itself, started by a non-root account.
    entry = pwd.getpwnam("af-bob")
    result = subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
        + [sys.executable, "-m", "af.cli", "--state-dir", "/home/af-bob/af-state", "up"]
        + ["--facility", str(fac.facility_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HOME": "/home/af-bob"},
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "auth.unix_accounts.mode: shared" in " ".join(result.stderr.split())
    assert not Path("/home/af-bob/af-state/runtime.json").exists()


def test_token_file_belongs_to_the_account_in_a_root_owned_folder(fac: RunningFacility, alice: Notebook) -> None:
    folder = fac.state_dir / "tokens" / "alice"
    token = folder / "bearer_token"
    account = pwd.getpwnam("af-alice")
    uid, gid = account.pw_uid, account.pw_gid
    # Only root writes in the folder (no link can redirect the hub's writes); the file is alice's, 0600.
    assert (folder.stat().st_uid, folder.stat().st_gid, stat.S_IMODE(folder.stat().st_mode)) == (0, gid, 0o750)
    assert (token.stat().st_uid, token.stat().st_gid, stat.S_IMODE(token.stat().st_mode)) == (uid, gid, 0o600)


def test_shared_mode_runs_everything_as_the_facilitys_own_user(start_facility: StartFacility) -> None:
    """auth.unix_accounts.mode: shared keeps the one-account facility: no account is made for the user."""
    raw = copy.deepcopy(embedded_raw())
    raw["auth"]["unix_accounts"] = {"mode": "shared"}
    shared = start_facility(raw)
    carol = _notebook(shared, "carol-shared")
    seen = carol.run_json("import os, json; print(json.dumps({'uid': os.getuid(), 'home': os.environ['HOME']}))")
    assert seen == {"uid": os.geteuid(), "home": str(shared.state_dir / "home" / "carol-shared")}
    with _gateway(shared, carol.session) as gateway:
        cluster = gateway.new_cluster()
        try:
            with cluster.get_client() as client:
                assert client.run_on_scheduler(os.getuid) == os.geteuid()
        finally:
            cluster.shutdown()
    with pytest.raises(KeyError):
        pwd.getpwnam(unix_name("carol-shared"))
    carol.session.stop_server()


def test_mirrored_account_follows_the_host_account_into_a_chroot(tmp_path: Path) -> None:
    """The HTCondor chroot gets the account with the host's ids, also after the host account changed."""
    from facility.accounts import ensure_account, lookup, remove_account
    from facility.model import UnixAccounts

    settings = UnixAccounts()
    chroot = tmp_path / "chroot"
    (chroot / "etc").mkdir(parents=True)
    for table in ("passwd", "group", "shadow", "gshadow"):
        root_line = next(line for line in Path("/etc", table).read_text().splitlines() if line.startswith("root:"))
        (chroot / "etc" / table).write_text(root_line + "\n")
    hub_name = "mirror-check"
    remove_account(hub_name, settings)

    def chroot_ids(name: str) -> tuple[str, str]:
        line = next(x for x in (chroot / "etc" / "passwd").read_text().splitlines() if x.startswith(name + ":"))
        return line.split(":")[2], line.split(":")[3]

    try:
        first = ensure_account(hub_name, settings, extra_roots=[chroot])
        assert chroot_ids(first.name) == (str(first.uid), str(first.gid))
        # The site re-numbers the host account; the next use carries the new ids into the chroot.
        subprocess.run(["groupmod", "--gid", str(first.gid + 500), first.name], check=True)
        subprocess.run(
            ["usermod", "--uid", str(first.uid + 500), "--gid", str(first.gid + 500), first.name], check=True
        )
        renumbered = lookup(hub_name, settings)
        assert renumbered is not None and renumbered.uid == first.uid + 500
        ensure_account(hub_name, settings, extra_roots=[chroot])
        assert chroot_ids(first.name) == (str(first.uid + 500), str(first.gid + 500))
        group_line = next(
            x for x in (chroot / "etc" / "group").read_text().splitlines() if x.startswith(first.name + ":")
        )
        assert group_line.split(":")[2] == str(first.gid + 500)
    finally:
        remove_account(hub_name, settings)
