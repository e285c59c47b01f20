"""The facility's supervisord as tests drive it: supervisorctl of a running facility, a
component's pid, and waiting for a condition that a restart makes true again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.harness import RunningFacility


def supervisor(running: RunningFacility, *args: str) -> str:
    conf = running.state_dir / "supervisord.conf"
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "supervisorctl"), "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout


def pid_of(running: RunningFacility, name: str) -> int:
    line = supervisor(running, "status", name)
    assert "RUNNING" in line, line
    return int(line.split("pid ")[1].split(",")[0])


def wait_for(check, what: str, timeout: float = 90) -> float:
    """Seconds until check() holds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (requests.RequestException, OSError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout} s")
