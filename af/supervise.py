"""Run the facility's processes under supervisord: restarts, log files, one clean shutdown.

`af down` asks supervisord to stop everything, then sweeps any process still marked with this
instance's AF_INSTANCE (notebook servers, Dask schedulers and workers are started by the hub and
the gateways, not by supervisord, and must not outlive the facility).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from http.client import HTTPConnection
from pathlib import Path

import psutil

from af.components import VENV_BIN, Component
from af.runtime import StateDir


def _quote_env(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in env.items())


def supervisor_config(state: StateDir, parts: list[Component]) -> str:
    lines = [
        "[supervisord]",
        f"logfile={state.log('supervisord')}",
        f"pidfile={state.supervisor_pid}",
        f"directory={state.root}",
        # What the hub and gateways create (databases, logs, folders) is private unless made otherwise.
        "umask=077",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={state.supervisor_socket}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state.supervisor_socket}",
    ]
    path = f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    for part in parts:
        env = {"PATH": path, "PYTHONUNBUFFERED": "1", **part.env}
        lines += [
            "",
            f"[program:{part.name}]",
            "command=" + shlex.join(part.command).replace("%", "%%"),
            f"environment={_quote_env(env)}".replace("%", "%%"),
            f"directory={state.root}",
            f"stdout_logfile={state.log(part.name)}",
            "redirect_stderr=true",
            "stdout_logfile_maxbytes=20MB",
            "autorestart=true",
            "startsecs=3",
            "startretries=3",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=30",
            f"priority={part.priority}",
        ]
    return "\n".join(lines) + "\n"


def supervisord_pid(state: StateDir) -> int | None:
    """The pid of this instance's supervisord, if it is running."""
    try:
        pid = int(state.supervisor_pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if "supervisord" in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
            return pid
    except psutil.Error:
        pass
    return None


def start_supervisord(state: StateDir, parts: list[Component]) -> None:
    fd = os.open(state.supervisor_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(supervisor_config(state, parts))
    subprocess.run(
        [str(VENV_BIN / "supervisord"), "-c", str(state.supervisor_conf)],
        check=True,
        env={**os.environ, "AF_INSTANCE": str(state.root)},
    )


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: Path):
        super().__init__()
        self._path = str(path)

    def make_connection(self, host):  # noqa: ANN001, ANN201 - xmlrpc's signature
        conn = HTTPConnection("localhost")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self._path)
        conn.sock = sock
        return conn


def rpc(state: StateDir) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(state.supervisor_socket))


def process_states(state: StateDir) -> dict[str, dict]:
    """supervisord's view of each program (statename, pid, ...); empty when it is not running."""
    if supervisord_pid(state) is None:
        return {}
    try:
        return {info["name"]: info for info in rpc(state).supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error):
        return {}


def instance_processes(state: StateDir) -> list[psutil.Process]:
    """Every process carrying this instance's AF_INSTANCE marker (children of the hub and gateways too)."""
    marker = f"AF_INSTANCE={state.root}".encode()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as env:
                if marker in env.read().split(b"\0"):
                    found.append(proc)
        except OSError:
            continue
    return found


def stop_all(state: StateDir, timeout: float = 40.0, keep_sessions: bool = False) -> int:
    """Stop supervisord and everything it or its children started; returns how many were swept.

    keep_sessions (hub.on_down: keep): sweep only what is left in supervisord's own session. The
    hub's spawners and the gateways' backends start notebook servers, kernels and Dask processes
    in sessions of their own (start_new_session) so that they outlive their parent: those stay.
    """
    pid = supervisord_pid(state)
    session = _session_of(pid)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid = None
    deadline = time.monotonic() + timeout
    while pid is not None and psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
    leftovers = instance_processes(state)
    if keep_sessions:
        leftovers = [p for p in leftovers if session is not None and _session_of(p.pid) == session]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(leftovers, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(leftovers)


def _session_of(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return os.getsid(pid)
    except OSError:
        return None


def http_ok(port: int, path: str, timeout: float = 2.0) -> bool:
    """Whether GET path answers with success or a redirect (an error page is not "up")."""
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 400
    except OSError:
        return False
    finally:
        conn.close()


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def is_up(part: Component, states: dict[str, dict]) -> bool:
    """Answers on its health path or port; one that listens nowhere is up when supervisord runs it
    (`states`: process_states)."""
    if part.port is None:
        return states.get(part.name, {}).get("statename") == "RUNNING"
    if part.health_path:
        return http_ok(part.health_port or part.port, part.health_path)
    return port_open(part.port)


def who_listens(port: int) -> str | None:
    """Describe the process listening on a loopback port, for a clear 'port taken' error."""
    try:
        conns = psutil.net_connections("tcp")
    except psutil.Error:
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                try:
                    proc = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(proc.cmdline())[:80]})"
                except psutil.Error:
                    return f"pid {conn.pid}"
            return "another process"
    return "another process" if port_open(port, 0.3) else None


def python() -> str:
    return sys.executable
