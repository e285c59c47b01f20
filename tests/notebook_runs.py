"""`af run` inside a user's notebook server, for the quota tests (issue 20).

There the kernel runs as the user's own Unix account, which cannot read runtime.json, so `af run`
asks the hub to count the run (hub_config/run_admission.py). tests/test_run_quota_notebook.py does
this in a local server, tests/test_quota_slurm.py in a server that is a Slurm job; both use these
helpers: run code in the server's kernel, start `af run` there (in the foreground, or in the
background until a go file appears), and read the run records the hub keeps.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facility import runs
from facility.accounts import lookup
from facility.model import UnixAccounts
from facility.quota import Holding
from tests.harness import ANSI_ESCAPE, ROOT, HubSession, RunningFacility, execute_in_kernel, scope_account_prefix

# A notebook that waits for a file `go` (or `limit` seconds) and prints; written into the user's home.
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": "go = ''\nlimit = 120",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "import pathlib, time\nstart = time.time()\n"
            "while go and not pathlib.Path(go).exists() and time.time() - start < limit:\n    time.sleep(0.2)\n"
            "print('ran')",
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 4,  # cells without ids
}


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.3)


def with_server(session: HubSession, server: dict[str, Any]) -> HubSession:
    """`session` with its ready server's URL and a token for it (what in_server needs)."""
    session.server_url = f"{session.url}{server['url']}"  # type: ignore[attr-defined]
    session.server_token = session.token()  # type: ignore[attr-defined]
    return session


def in_server(session: HubSession, code: str, timeout: float = 240) -> Any:
    """Run `code` in a kernel of the session's server (as its user's account); the JSON its last line prints."""
    out = execute_in_kernel(session.server_url, session.server_token, code, timeout=timeout)  # type: ignore[attr-defined]
    seen = json.loads(out.strip().splitlines()[-1])
    if isinstance(seen, dict):  # a kernel's subprocesses may colour their output (rich)
        seen = {k: ANSI_ESCAPE.sub("", v) if isinstance(v, str) else v for k, v in seen.items()}
    return seen


def home_of(user: str) -> Path:
    """The home of a hub user's Unix account (per-user accounts under this test scope's prefix)."""
    account = lookup(user, UnixAccounts(prefix=scope_account_prefix()))
    assert account is not None, f"{user} has no Unix account yet (does she have a server?)"
    return account.home


def af_run_code(
    run_dir: str, *args: str, backend: str = "local", env: dict[str, str] | None = None, background: bool = False
) -> str:
    """Kernel code: `af run ~/wait.ipynb --backend BACKEND --run-dir ~/<run_dir> ARGS` as the server's
    user, with the af of this checkout (the venv's editable install may name another).

    In the foreground it prints {rc, out, err}; in the background (its own session, outliving the
    kernel) it prints {pid} and leaves rc, out and err in ~/<run_dir>.rc, .out, .err."""
    return f"""
import json, os, pathlib, shlex, subprocess, sys
home = pathlib.Path.home()
(home / 'wait.ipynb').write_text({json.dumps(json.dumps(NOTEBOOK))})
argv = [sys.executable, '-m', 'af.cli', 'run', str(home / 'wait.ipynb'), '--backend', {backend!r},
        '--run-dir', str(home / {run_dir!r}), *{list(args)!r}]
env = {{**os.environ, 'COLUMNS': '200', 'PYTHONPATH': {str(ROOT)!r}, **{env or {}!r}}}
if {background!r}:
    base = shlex.quote(str(home / {run_dir!r}))
    script = f'{{shlex.join(argv)}} >{{base}}.out 2>{{base}}.err; echo $? >{{base}}.rc'
    proc = subprocess.Popen(['sh', '-c', script], env=env, start_new_session=True)
    print(json.dumps({{'pid': proc.pid}}))
else:
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=200)
    print(json.dumps({{'rc': r.returncode, 'out': r.stdout, 'err': ' '.join(r.stderr.split())}}))
"""


def af_run_in_server(session: HubSession, run_dir: str, *args: str, **options: Any) -> dict[str, Any]:
    """`af run` in the foreground in the session's server (af_run_code): {rc, out, err}."""
    return in_server(session, af_run_code(run_dir, *args, **options))


def records(running: RunningFacility, user: str) -> list[dict[str, Any]]:
    """The user's run records in the facility's runs folder (as the facility, root, reads them)."""
    folder = runs.runs_dir(running.state_dir) / user
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def runs_of(running: RunningFacility, user: str) -> list[Holding]:
    """The user's runs that count now (what the ledger reads)."""
    return runs.running(runs.runs_dir(running.state_dir), user)


@dataclass(frozen=True)
class BackgroundRun:
    """An `af run` under way in a user's server, waiting for its go file; its files in the user's home."""

    name: str
    home: Path

    @property
    def go(self) -> Path:
        return self.home / f"go-{self.name}"

    @property
    def rc(self) -> Path:
        return self.home / f"{self.name}.rc"

    def errors(self) -> str:
        return (self.home / f"{self.name}.err").read_text(errors="replace")

    def release(self) -> None:
        """Let its notebook finish."""
        self.go.touch()

    def wait_ended(self, timeout: float = 150) -> int:
        """Its exit status, once its `af run` has ended."""
        wait_until(self.rc.exists, f"the run {self.name} to end", timeout)
        return int(self.rc.read_text().strip())


def fresh_run(user: str, name: str) -> BackgroundRun:
    """A run's files, none of an earlier test session's left (nor its folder)."""
    run = BackgroundRun(name, home_of(user))
    shutil.rmtree(run.home / name, ignore_errors=True)
    for path in (run.go, run.rc, run.home / f"{name}.out", run.home / f"{name}.err"):
        path.unlink(missing_ok=True)
    return run


def start_run(
    running: RunningFacility, session: HubSession, name: str, backend: str = "local", timeout: float = 60
) -> BackgroundRun:
    """`af run` NAME in the background in the session's server, once the hub has admitted and
    recorded it (it waits for its go file); fails with the run's errors if it ended instead."""
    user = session.username
    run = fresh_run(user, name)
    in_server(session, af_run_code(name, "-p", "go", str(run.go), backend=backend, background=True))
    wait_until(lambda: any(r["name"] == name for r in records(running, user)) or run.rc.exists(), "its record", timeout)
    assert not run.rc.exists(), run.errors()
    return run


def assert_own_account_cannot_read_the_runtime(running: RunningFacility, session: HubSession) -> None:
    """The premise: the kernel runs as the user's account, which cannot read runtime.json, and has the hub's token."""
    seen = in_server(
        session,
        "import json, os, getpass\n"
        f"path = {str(running.state_dir / 'runtime.json')!r}\n"
        "try:\n    open(path).read(); readable = True\nexcept PermissionError:\n    readable = False\n"
        "print(json.dumps({'user': getpass.getuser(), 'readable': readable,"
        " 'hub': bool(os.environ.get('JUPYTERHUB_API_TOKEN') and os.environ.get('JUPYTERHUB_API_URL'))}))",
    )
    assert seen == {"user": f"{scope_account_prefix()}{session.username}", "readable": False, "hub": True}
