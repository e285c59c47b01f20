"""Drive a real running facility from tests: `af up` on free ports, HTTP login, spawn, kernels.

Nothing here stands in for a component: the hub, proxy, gateways and notebook servers are the
real processes `af up` starts; this module only talks to them the way a browser or notebook would.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml
from requests.adapters import HTTPAdapter
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect
from urllib3.util.retry import Retry

from tests.spawn_events import progress_stream

ROOT = Path(__file__).resolve().parent.parent
AF = [sys.executable, "-m", "af.cli"]
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# Blocks handed out to test processes still alive (pytest runs its workers in parallel): a block
# chosen before its facility binds it still looks free, and the kernel readily hands the same
# ephemeral port out again, to this process or to another worker.
PORT_REGISTRY = Path(tempfile.gettempdir()) / "af-test-ports.json"


def free_port_block(size: int = 20) -> int:
    """A base port with `size` consecutive free ports above it (the facility's port layout).

    Never overlaps a block handed out earlier to a test process that is still running.
    """
    with open(PORT_REGISTRY.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = [b for b in _registered_blocks() if psutil.pid_exists(b["pid"])]
        for _ in range(200):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                base = probe.getsockname()[1]
            stop = base + size
            if stop > 65000 or any(base < b["stop"] and b["start"] < stop for b in taken):
                continue
            if all(_port_free(port) for port in range(base, stop)):
                taken.append({"pid": os.getpid(), "start": base, "stop": stop})
                PORT_REGISTRY.write_text(json.dumps(taken))
                return base
    raise RuntimeError("no block of free ports found")


def _registered_blocks() -> list[dict[str, int]]:
    try:
        return json.loads(PORT_REGISTRY.read_text())
    except (OSError, ValueError):
        return []


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def facility_folder(name: str) -> Path:
    """A 0700 folder for one test facility's files, outside pytest's base temporary folder.

    `af up` lets per-user accounts pass through the folders above the state folder with an ACL
    (af.host_access); every new pytest session chmods its base folder (/tmp/pytest-of-root) to
    0700, which drops such an ACL entry while another session's facility still runs.
    """
    return Path(tempfile.mkdtemp(prefix=f"af-test-{name}-"))


def write_facility(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# The Unix account prefix of the test scope running in this process (tests/conftest.py sets it per
# test): test facilities that run at once must not share accounts.
ACCOUNT_PREFIX_ENV = "AF_TEST_ACCOUNT_PREFIX"


def scope_account_prefix() -> str:
    return os.environ.get(ACCOUNT_PREFIX_ENV, "af-")


def with_test_account_prefix(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with auth.unix_accounts.prefix set to this test scope's, unless it sets its own."""
    auth = raw.get("auth", {})
    accounts = auth.get("unix_accounts", {})
    if "prefix" in accounts:
        return raw
    return {**raw, "auth": {**auth, "unix_accounts": {**accounts, "prefix": scope_account_prefix()}}}


def embedded_raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "facility" / "embedded.yaml").read_text())


def run_af(state_dir: Path, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """`af ARGS` with this state folder; a first `af up` gets ports this test session reserved.

    Without `--port`, `af up` would take the embedded default (8000 and up), which a facility
    started by `make up` on the same machine may hold.
    """
    if args[:1] == ("up",) and "--port" not in args and not (state_dir / "runtime.json").exists():
        args = (*args, "--port", str(free_port_block()))
    env = {**os.environ, "AF_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    result = subprocess.run(
        [*AF, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        logs = named_log_tails(result.stdout + result.stderr)
        raise AssertionError(f"af {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}{logs}")
    return result


def named_log_tails(output: str, lines: int = 40) -> str:
    """The last lines of every log file `output` names ("... did not start; see /state/logs/x.log"):
    the state folder may be gone by the time anyone reads the test's failure."""
    tails = []
    for name in dict.fromkeys(re.findall(r"(/[^\s,;:'\"]+\.log)\b", output)):
        path = Path(name)
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else ["(no such file)"]
        tails.append(f"\n--- last {lines} lines of {path} ---\n" + "\n".join(text))
    return "".join(tails)


@dataclass
class RunningFacility:
    state_dir: Path
    facility_file: Path

    @property
    def runtime(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "runtime.json").read_text())

    @property
    def url(self) -> str:
        return self.runtime["public_url"]

    @property
    def shared_password(self) -> str:
        """The password of auth.shared_password (only a facility that opts into it accepts it)."""
        return self.runtime["secrets"]["user_password"]

    @property
    def admin_password(self) -> str:
        return self.runtime["secrets"]["admin_password"]

    def af(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return run_af(self.state_dir, *args, **kwargs)

    def password_of(self, username: str) -> str:
        """username's own password: the first call creates the login with `af user add`."""
        known = _passwords.setdefault(self.state_dir, {})
        if username not in known:
            known[username] = self.af("user", "add", username).stdout.strip().splitlines()[-1]
        return known[username]

    def login(self, username: str, password: str | None = None) -> HubSession:
        return HubSession.login(self.url, username, password or self.password_of(username))


# Passwords `af user add` printed, per state folder: each is shown only once.
_passwords: dict[Path, dict[str, str]] = {}


class HubSession:
    """A browser-like session: cookies, the hub's XSRF token, form posts."""

    def __init__(self, url: str, username: str):
        self.url = url
        self.username = username
        self.http = requests.Session()
        # The proxy (node) closes a keep-alive connection after 5 s idle; a request sent on it at that
        # moment is reset. Idempotent requests try again on a new connection, as a browser does.
        again = Retry(total=2, connect=2, read=1, status=0, allowed_methods=Retry.DEFAULT_ALLOWED_METHODS)
        self.http.mount("http://", HTTPAdapter(max_retries=again))
        self.http.mount("https://", HTTPAdapter(max_retries=again))

    @classmethod
    def login(cls, url: str, username: str, password: str) -> HubSession:
        session = cls(url, username)
        session.http.get(f"{url}/hub/login", timeout=30)
        reply = session.http.post(
            f"{url}/hub/login",
            data={"username": username, "password": password, "_xsrf": session.xsrf},
            timeout=30,
            allow_redirects=False,
        )
        if reply.status_code != 302:
            raise AssertionError(f"login of {username} failed: {reply.status_code}")
        return session

    @property
    def xsrf(self) -> str:
        return self.http.cookies.get("_xsrf", path="/hub/") or self.http.cookies.get("_xsrf") or ""

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf, **kwargs.pop("headers", {})}
        return self.http.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs)

    def progress(self, started_within: float = 30) -> requests.Response:
        """The hub's progress stream of this user's spawn (server-sent events, streamed), asked
        again while the hub says "is not starting" (tests.spawn_events)."""
        url = f"/users/{self.username}/server/progress"
        return progress_stream(lambda: self.api("GET", url, stream=True), started_within)

    def spawn_form(self) -> str:
        reply = self.http.get(f"{self.url}/hub/spawn", timeout=60)
        reply.raise_for_status()
        return reply.text

    def post_spawn_form(self, fields: dict[str, str]) -> requests.Response:
        return self.http.post(f"{self.url}/hub/spawn", data={**fields, "_xsrf": self.xsrf}, timeout=60)

    def server(self) -> dict[str, Any] | None:
        return self.api("GET", f"/users/{self.username}").json().get("servers", {}).get("")

    def wait_ready(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server()
            if server and server.get("ready"):
                return server
            if server is None and time.monotonic() > deadline - timeout + 5:
                progress = self.api("GET", f"/users/{self.username}/server/progress")
                if progress.status_code == 404:
                    raise AssertionError(f"{self.username}'s server is gone: spawn failed")
            time.sleep(1)
        raise AssertionError(f"{self.username}'s server not ready after {timeout} s")

    def stop_server(self) -> None:
        self.api("DELETE", f"/users/{self.username}/server")
        deadline = time.monotonic() + 60
        while self.server() is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def token(self, note: str = "test") -> str:
        reply = self.api("POST", f"/users/{self.username}/tokens", json={"note": note, "expires_in": 3600})
        reply.raise_for_status()
        return reply.json()["token"]


def post_login(running: RunningFacility, name: str, password: str) -> requests.Response:
    """The hub's login form posted once by a new browser-like session; the answer, not followed."""
    session = HubSession(running.url, name)
    session.http.get(f"{running.url}/hub/login", timeout=30)
    return session.http.post(
        f"{running.url}/hub/login",
        data={"username": name, "password": password, "_xsrf": session.xsrf},
        allow_redirects=False,
        timeout=30,
    )


def execute_in_kernel(server_url: str, token: str, code: str, timeout: float = 180) -> str:
    """Run code in a new kernel of a notebook server (REST + websocket, as JupyterLab does).

    Returns the cell's stdout; raises AssertionError with the traceback if the cell fails.
    """
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{server_url}api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    try:
        return IOLoop().run_sync(lambda: _execute(server_url, kernel_id, headers, code, timeout), timeout=timeout)
    finally:
        requests.delete(f"{server_url}api/kernels/{kernel_id}", headers=headers, timeout=30)


async def _execute(server_url: str, kernel_id: str, headers: dict[str, str], code: str, timeout: float) -> str:
    ws_url = server_url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
    # Jupyter Server answers the upgrade only once the new kernel replies to kernel_info; with many
    # kernels starting at once that outlasts tornado's 20 s default. A browser's WebSocket has no
    # timeout of its own, so only the whole call's `timeout` bounds it here.
    request = HTTPRequest(ws_url, headers=headers, connect_timeout=timeout, request_timeout=timeout)
    conn = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": "test",
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    conn.write_message(
        json.dumps(
            {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": content,
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    stdout: list[str] = []
    error = None
    while True:
        raw = await conn.read_message()
        if raw is None:
            raise AssertionError("kernel websocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
        elif kind == "error":
            error = ANSI_ESCAPE.sub("", "\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    conn.close()
    if error:
        raise AssertionError(f"cell failed:\n{error}")
    return "".join(stdout)


def cluster_title(gateway: Any, cluster_id: str) -> str:
    """The name people see for a cluster, as refusals quote it: its `cluster_name` option (the
    gateway stores a generated one when none is given), from the gateway's own report."""
    from backends.common.cluster_names import display_name

    return repr(display_name(gateway.get_cluster(cluster_id).options, cluster_id))
