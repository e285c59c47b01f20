"""Many users log in and start their servers at the same moment, as a browser does; the hub's API is
probed meanwhile. Used by tests/test_spawn_storm.py and benchmarks/storm.py.

Each user (the facility opts into auth.shared_password, as a tutorial would): log in (form), post
the spawn form, then read the spawn page's event stream (/hub/api/users/<name>/server/progress,
what the page's EventSource reads) until it says ready or failed, keeping every message. A probe
user asks the hub's REST API who it is every `probe_interval` seconds from before the first login
until the last spawn has ended.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.harness import HubSession, RunningFacility

LOOP_STALL = re.compile(r"Event loop was unresponsive for at least ([0-9.]+)s")
QUEUED = "to start first"  # in hub_config.spawn_queue's message while a spawn waits in line
SPAWN_FORM = {"backend": "local", "cores": "1", "memory_gb": "1", "image": "coffea-2026"}


@dataclass
class UserOutcome:
    name: str
    ready: bool = False
    seconds: float | None = None  # spawn form posted -> ready event
    messages: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class StormResult:
    users: list[UserOutcome]
    probe_seconds: list[float]  # latency of each hub API probe during the storm
    probe_failures: list[str]
    wall_seconds: float
    loop_stalls: list[float] = field(default_factory=list)  # hub.log: "Event loop was unresponsive for at least X s"

    @property
    def ready(self) -> list[UserOutcome]:
        return [u for u in self.users if u.ready]

    def summary(self) -> dict[str, Any]:
        latencies = sorted(u.seconds for u in self.ready if u.seconds is not None)
        return {
            "users": len(self.users),
            "ready": len(self.ready),
            "ready_fraction": len(self.ready) / len(self.users),
            "spawn_p50_s": percentile(latencies, 50),
            "spawn_p95_s": percentile(latencies, 95),
            "spawn_max_s": latencies[-1] if latencies else None,
            "hub_api_p95_s": percentile(sorted(self.probe_seconds), 95),
            "hub_api_max_s": max(self.probe_seconds, default=None),
            "hub_api_probes": len(self.probe_seconds),
            "hub_api_failures": len(self.probe_failures),
            "saw_queue_message": sum(any(QUEUED in m for m in u.messages) for u in self.users),
            "hub_loop_stalls": len(self.loop_stalls),
            "hub_loop_stall_max_s": max(self.loop_stalls, default=None),
            "wall_s": self.wall_seconds,
            "errors": sorted({u.error for u in self.users if u.error}),
        }


def percentile(ordered: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None if empty."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def _spawn(running: RunningFacility, outcome: UserOutcome, go: threading.Barrier, timeout: float) -> None:
    try:
        go.wait()
        session = running.login(outcome.name, running.shared_password)
        posted = time.monotonic()
        reply = session.http.post(
            f"{session.url}/hub/spawn", data={**SPAWN_FORM, "_xsrf": session.xsrf}, timeout=120, allow_redirects=False
        )
        if reply.status_code != 302:
            outcome.error = f"spawn form answered {reply.status_code}: {message_of(reply.text)}"
            return
        follow_progress(session, outcome, posted, timeout)
    except Exception as exc:  # noqa: BLE001 - any failure of one user is that user's result
        outcome.error = f"{type(exc).__name__}: {exc}"


def follow_progress(session: HubSession, outcome: UserOutcome, posted: float, timeout: float) -> None:
    url = f"{session.url}/hub/api/users/{outcome.name}/server/progress"
    deadline = posted + timeout
    while time.monotonic() < deadline:
        with session.http.get(url, stream=True, timeout=(30, 120)) as stream:
            if stream.status_code != 200:
                # Not pending (yet or any more): ask the server list whether it is up.
                server = session.server()
                if server and server.get("ready"):
                    outcome.ready, outcome.seconds = True, time.monotonic() - posted
                    return
                if server is None:
                    outcome.error = f"progress answered {stream.status_code} and no server exists"
                    return
                time.sleep(1)
                continue
            for line in stream.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("message"):
                    outcome.messages.append(event["message"])
                if event.get("ready"):
                    outcome.ready, outcome.seconds = True, time.monotonic() - posted
                    return
                if event.get("failed"):
                    outcome.error = event.get("message") or "spawn failed"
                    return
    outcome.error = f"not ready after {timeout:.0f} s"


def message_of(page: str) -> str:
    found = re.search(r'<p class="lead">\s*(.*?)\s*</p>|<div class="error">.*?<p>(.*?)</p>', page, re.S)
    text = (found.group(1) or found.group(2)) if found else page[:200]
    return " ".join(text.split())


def _probe(url: str, token: str, stop: threading.Event, interval: float, out: StormResult) -> None:
    headers = {"Authorization": f"token {token}"}
    while not stop.is_set():
        started = time.monotonic()
        try:
            reply = requests.get(f"{url}/hub/api/user", headers=headers, timeout=30)
            elapsed = time.monotonic() - started
            if reply.status_code == 200:
                out.probe_seconds.append(elapsed)
            else:
                out.probe_failures.append(f"{reply.status_code} after {elapsed:.1f} s")
        except requests.RequestException as exc:
            out.probe_failures.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
        stop.wait(interval)


def storm(
    running: RunningFacility, names: list[str], timeout: float = 300, probe_interval: float = 0.25
) -> StormResult:
    """All `names` log in and spawn at once; returns every outcome and the probes' latencies."""
    token = running.login("stormprobe", running.shared_password).token(note="storm probe")
    result = StormResult([UserOutcome(n) for n in names], [], [], 0.0)
    hub_log = running.state_dir / "logs" / "hub.log"
    log_start = hub_log.stat().st_size if hub_log.exists() else 0
    go = threading.Barrier(len(names))
    stop = threading.Event()
    prober = threading.Thread(target=_probe, args=(running.url, token, stop, probe_interval, result), daemon=True)
    workers = [threading.Thread(target=_spawn, args=(running, u, go, timeout), daemon=True) for u in result.users]
    started = time.monotonic()
    prober.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout + 180)
    result.wall_seconds = time.monotonic() - started
    stop.set()
    prober.join(60)
    if hub_log.exists():
        with hub_log.open(errors="replace") as log:
            log.seek(log_start)
            result.loop_stalls = [float(s) for s in LOOP_STALL.findall(log.read())]
    return result


def stop_servers(running: RunningFacility, names: list[str]) -> None:
    """Stop every server of `names` (as the admin API would), and wait until they are gone."""
    sessions = [running.login(n, running.shared_password) for n in names]
    for session in sessions:
        session.api("DELETE", f"/users/{session.username}/server")
    deadline = time.monotonic() + 120
    for session in sessions:
        while session.server() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
