"""Usage accounting on a real facility (issue 20), the sampler taking a sample every 2 s.

alice holds a notebook server (1 core, 1 GB) and a Dask cluster of two workers (1 core, 1 GB
each). The usage file grows by held cores × the time between samples; a restart of the sampler
loses nothing and counts no time twice; `af usage` prints alice's line; the hub page /hub/usage
shows her use to an admin, only the participants' to an event's instructor, and refuses anyone
else in words. The arithmetic alone is tested in tests/test_usage_accounting.py.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import facility
from facility.accounts import remove_account
from facility.cluster_lifetime import ALL_CLUSTERS_PATH
from facility.quota import CLUSTER, SERVER
from facility.usage import CAP_INTERVALS, UsageStore, usage_path
from tests.harness import RunningFacility, embedded_raw
from tests.test_restarts import supervisor, wait_for

pytestmark = [
    pytest.mark.side_facility,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

INTERVAL = 2  # seconds between samples
SERVER_OPTIONS = {"backend": "local", "cores": 1, "memory_gb": 1, "image": "coffea-2026"}
PARTICIPANT = "use-01"  # of the event `use`, whose instructor is bob


@pytest.fixture(scope="module")
def running(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["usage"] = {"sample_interval_seconds": INTERVAL}
    fac = start_facility(raw)
    remove_account(PARTICIPANT, facility.load(fac.facility_file).auth.unix_accounts)  # no account of an earlier run
    return fac


@pytest.fixture(scope="module")
def alice(running):
    session = running.login("alice")
    reply = session.api("POST", "/users/alice/server", json=SERVER_OPTIONS)
    assert reply.status_code in (201, 202), reply.text
    session.wait_ready()
    return session


def running_workers(running: RunningFacility, user: str) -> int:
    """The running workers of the user's clusters, as the gateway tells the sampler."""
    gw = running.runtime["gateways"]["local"]
    reply = requests.get(
        f"{gw['url']}{ALL_CLUSTERS_PATH}", headers={"Authorization": f"Bearer {gw['api_token']}"}, timeout=10
    )
    reply.raise_for_status()
    return sum(c["running_workers"] for c in reply.json()["users"].get(user, []))


@pytest.fixture(scope="module")
def cluster(running, alice):
    from dask_gateway import Gateway, JupyterHubAuth

    with Gateway(running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=alice.token())) as gw:
        cluster = gw.new_cluster(worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
        cluster.scale(2)
        wait_for(lambda: running_workers(running, "alice") == 2, "alice's 2 workers running", timeout=120)
        yield cluster
        gw.stop_cluster(cluster.name)


def recorded(running: RunningFacility, user: str = "alice") -> tuple[float, dict[str, tuple[float, float, float]]]:
    """The last sample's time and the user's recorded (core, memory GB, GPU) seconds per kind, read
    between two samples (the time read before and after the rows agrees)."""
    store = UsageStore(usage_path(running.state_dir))
    while True:
        last = store.last_sample()
        kinds: dict[str, tuple[float, float, float]] = {}
        for row in store.rows(users={user}):
            before = kinds.get(row.kind, (0.0, 0.0, 0.0))
            kinds[row.kind] = (
                before[0] + row.core_seconds,
                before[1] + row.memory_gb_seconds,
                before[2] + row.gpu_seconds,
            )
        if store.last_sample() == last and last is not None:
            return last, kinds
        time.sleep(0.1)


@contextlib.contextmanager
def sample_times(running: RunningFacility) -> Iterator[list[float]]:
    """The time of every sample recorded while the block runs (the store read every 0.1 s, samples
    come every INTERVAL s), the last one before the block first."""
    store = UsageStore(usage_path(running.state_dir))
    times = [store.last_sample()]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            last = store.last_sample()
            if last != times[-1]:
                times.append(last)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield times
    finally:
        done.set()
        watcher.join()


def between(times: list[float], first: float, last: float) -> list[float]:
    """The sample times from `first` to `last`, both of which the watcher saw."""
    window = [t for t in times if first <= t <= last]
    assert window[0] == first and window[-1] == last, (times, first, last)
    return window


def counted(times: list[float]) -> float:
    """The seconds the sampler counts between these samples: each step, at most CAP_INTERVALS intervals."""
    return sum(min(b - a, CAP_INTERVALS * INTERVAL) for a, b in itertools.pairwise(times))


def grown(before: dict, after: dict, kind: str) -> tuple[float, float]:
    """(core, memory) seconds recorded for `kind` between two readings."""
    old = before.get(kind, (0.0, 0.0, 0.0))
    new = after.get(kind, (0.0, 0.0, 0.0))
    return new[0] - old[0], new[1] - old[1]


def test_usage_grows_by_held_cores_times_the_time_between_samples(running, alice, cluster) -> None:
    """With nothing started or stopped, the server's core-seconds grow by 1 × the seconds counted
    between the samples and the cluster's by 2 × (two 1-core workers): the time between samples,
    each step at most CAP_INTERVALS intervals (on this busy host a sample may come late). The
    sampler's clock agrees with the test's within an interval or two."""
    with sample_times(running) as times:
        last_a, a = recorded(running)
        wall_a = time.time()
        time.sleep(8 * INTERVAL)
        last_b, b = recorded(running)
        wall_b = time.time()
    times = between(times, last_a, last_b)
    seconds, elapsed = counted(times), last_b - last_a
    server_cores, server_gb = grown(a, b, SERVER)
    cluster_cores, cluster_gb = grown(a, b, CLUSTER)
    print(
        f"usage: {len(times) - 1} samples over {elapsed:.2f} s ({wall_b - wall_a:.2f} s wall), {seconds:.3f} s "
        f"counted; server {server_cores:.3f} core-s (expected {seconds:.3f}), cluster {cluster_cores:.3f} "
        f"core-s (expected {2 * seconds:.3f})"
    )
    assert len(times) >= 5 and abs(elapsed - (wall_b - wall_a)) <= 2 * INTERVAL + 1, (times, wall_b - wall_a)
    assert server_cores == pytest.approx(1 * seconds, abs=1e-6)
    assert cluster_cores == pytest.approx(2 * seconds, abs=1e-6)
    assert server_gb == pytest.approx(server_cores) and cluster_gb == pytest.approx(cluster_cores)
    assert b.get(SERVER, (0, 0, 0))[2] == 0  # no GPUs held, none counted
    path = usage_path(running.state_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_restart_of_the_sampler_loses_nothing_and_counts_no_time_twice(running, alice, cluster) -> None:
    """The restarted sampler goes on from the last recorded sample (its time is in the file): what
    was recorded stays, and the step over the restart counts at most CAP_INTERVALS intervals, so
    the time the sampler was down beyond that is not counted, and no second is counted twice."""
    with sample_times(running) as times:
        last_a, a = recorded(running)
        restarted = supervisor(running, "restart", "af-usage")
        assert "af-usage: stopped" in restarted and "af-usage: started" in restarted, restarted
        restart_done = time.time()
        wait_for(lambda: times[-1] > restart_done + 2 * INTERVAL, "samples of the restarted sampler")
        last_b, b = recorded(running)
    times = between(times, last_a, last_b)
    server_cores, _ = grown(a, b, SERVER)
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(
        f"over the restart: {server_cores:.3f} core-s recorded, {counted(times):.3f} s counted of "
        f"{times[-1] - times[0]:.3f} s; the sampler was away {gap:.1f} s between two samples"
    )
    assert all(b[kind][0] >= a[kind][0] for kind in a)  # nothing recorded was lost
    assert server_cores == pytest.approx(counted(times), abs=1e-6)  # each second once, the gap capped
    log = (running.state_dir / "logs" / "af-usage.log").read_text()
    assert log.count(f"sampling every {INTERVAL} s into {usage_path(running.state_dir)}") >= 2


def test_af_usage_prints_alices_line_and_a_plot(running, alice, cluster, tmp_path: Path) -> None:
    last, mine = recorded(running)
    shown = running.af("usage", "--by", "user", "--plot", str(tmp_path / "usage.png"))
    lines = [" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()]
    alice_line = next((line for line in lines if line.startswith("alice ")), None)
    assert alice_line is not None, shown.stdout
    core_hours = float(alice_line.split()[1])
    assert core_hours >= sum(v[0] for v in mine.values()) / 3600 - 0.001, (alice_line, mine)
    assert (tmp_path / "usage.png").read_bytes()[:4] == b"\x89PNG"
    by_backend = running.af("usage", "--by", "backend").stdout
    assert "local" in by_backend and "all" in by_backend, by_backend
    later = running.af("usage", "--since", (dt.date.today() + dt.timedelta(days=2)).isoformat(), check=False)
    assert later.returncode == 1 and "no usage recorded since" in later.stderr, later.stderr


def test_the_hub_page_shows_an_admin_everyone_and_refuses_a_user_in_words(running, alice, cluster) -> None:
    admin = running.login("admin", running.admin_password)
    page = admin.http.get(f"{running.url}/hub/usage?by=user", timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    assert "Core-hours, memory GB-hours and GPU-hours of every user" in page.text
    assert "<td>alice</td>" in page.text and 'href="/hub/usage"' in page.text  # her row; the admin's nav link
    home = alice.http.get(f"{running.url}/hub/home", timeout=30)
    assert 'href="/hub/usage"' not in home.text  # no link for a user who may not see it
    refused = alice.http.get(f"{running.url}/hub/usage", timeout=30)
    assert refused.status_code == 403
    assert "The usage page is for the facility&#39;s admins" in refused.text, refused.text[-2000:]
    bad = admin.http.get(f"{running.url}/hub/usage?by=kind&since=yesterday", timeout=30)
    assert bad.status_code == 400 and "&#39;kind&#39; is not a way to sum usage" in bad.text


def test_an_instructor_sees_only_the_participants(running, alice, cluster, tmp_path: Path) -> None:
    """bob teaches the event `use`; its one participant's server runs (pre-warmed): on /hub/usage bob
    sees the participant's use and not alice's."""
    start, end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=m) for m in (-5, 60))
    running.af(
        "event", "create", "use", "--start", start.isoformat(timespec="seconds"),
        "--end", end.isoformat(timespec="seconds"), "--participants", PARTICIPANT, "--instructor", "bob",
        "--handout", str(tmp_path / "handout"),
    )  # fmt: skip
    try:
        running.af("event", "prewarm", "use", "--timeout", "180")
        wait_for(lambda: recorded(running, PARTICIPANT)[1].get(SERVER, (0,))[0] > 0, "the participant's use recorded")
        bob = running.login("bob")
        page = bob.http.get(f"{running.url}/hub/usage", timeout=30)
        assert page.status_code == 200, page.text[-2000:]
        assert "of the participants of use" in page.text
        assert f"<td>{PARTICIPANT}</td>" in page.text and "<td>alice</td>" not in page.text
    finally:
        running.af("event", "end", "use")
