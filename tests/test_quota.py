"""One quota per person across notebook servers and Dask clusters (facility.yaml `quotas`, issue 20),
and the usage accounted from the same ledger.

Unit tests of the arithmetic and of facility.yaml's errors; then a real facility (local backend):
at her quota alice is refused a notebook server, a Dask cluster and a scale-up, each with a
message naming what she holds where; adaptive scaling stops at the quota; her server and cluster
are recorded as used (the sampler every 2 s: held cores × the seconds between samples), shown by
`af usage` and on /hub/usage (admins, an event's instructor; nobody else); after a restart of the
hub, the gateway and the usage sampler the ledger counts the same and the record goes on without
losing or doubling a second. (The usage arithmetic alone: tests/test_usage_accounting.py.)
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import os
import stat
import time
from typing import Any

import pytest
import requests

import facility
from facility.accounts import remove_account
from facility.model import Ceilings, Quota
from facility.quota import (
    CLUSTER,
    SERVER,
    Holding,
    cluster_holding,
    per_worker,
    quota_for,
    refusal,
    scale_refusal,
    use_text,
    workers_that_fit,
)
from facility.usage import usage_path
from tests.browser import log_in
from tests.harness import embedded_raw
from tests.usage_helpers import between, counted, grown, recorded, running_workers, sample_times

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)

# --- facility.yaml -------------------------------------------------------------------------------


def _with_quotas(quotas: dict[str, Any], groups: dict[str, list[str]] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(embedded_raw())
    raw["quotas"] = quotas
    if groups is not None:
        raw["auth"]["groups"] = groups
    return raw


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(facility.FacilityError) as caught:
        facility.from_dict(raw, "test.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("quotas", "expected"),
    [
        ({"default": {"cores": -1}}, "quotas.default.cores: -1 is out of range; expected a number >= 0"),
        ({"default": {"cpus": 4}}, "quotas.default: unknown key 'cpus'; allowed keys: backends, clusters, cores"),
        ({"default": {"servers": "one"}}, "quotas.default.servers: 'one' is a str; expected integer"),
        (
            {"default": {"backends": {"hpc": {"cores": 2}}}},
            "quotas.default.backends: 'hpc' is not a backend; known backends: local",
        ),
        (
            {"default": {"backends": {"local": {"backends": {}}}}},
            "quotas.default.backends.local: unknown key 'backends'",
        ),
        ({"groups": {"physics": {"cores": 8}}}, "quotas.groups: 'physics' is not a group of auth.groups; known"),
        ({"limits": {}}, "quotas: unknown key 'limits'; allowed keys: default, groups"),
    ],
)
def test_bad_quotas_name_key_value_and_allowed(quotas: dict[str, Any], expected: str) -> None:
    problems = _problems(_with_quotas(quotas))
    assert any(expected in p for p in problems), problems


def test_groups_keep_the_default_keys_they_leave_out_and_users_get_their_most_generous_group() -> None:
    raw = _with_quotas(
        {
            "default": {"cores": 2, "memory_gb": 4, "clusters": 1, "backends": {"local": {"cores": 1}}},
            "groups": {"physics": {"cores": 8}, "students": {"clusters": 3, "memory_gb": 2}},
        },
        groups={"physics": ["alice"], "students": ["alice", "bob"]},
    )
    fac = facility.from_dict(raw, "t.yaml")
    assert fac.quotas.groups["physics"].overall == Ceilings(cores=8, memory_gb=4, clusters=1)
    alice = quota_for(fac, {"physics", "students"})
    assert alice is not None
    assert alice.overall == Ceilings(cores=8, memory_gb=4, clusters=3)
    assert alice.backends["local"].cores == 1  # both groups kept the default's per-backend ceiling
    bob = quota_for(fac, {"students"})
    assert bob is not None and bob.overall == Ceilings(cores=2, memory_gb=2, clusters=3)
    assert quota_for(fac, {"nobody"}) == fac.quotas.default
    assert quota_for(fac, {"physics"}, is_admin=True) is None
    assert quota_for(facility.from_dict(embedded_raw(), "t.yaml"), set()) is None  # no quotas section


# --- the arithmetic ----------------------------------------------------------------------------------

SERVER_2 = Holding(SERVER, "local", "", cores=2, memory_gb=4)
ONE_CORE = per_worker(1, 2, 0)


def test_a_second_server_over_the_server_count_is_refused_naming_the_first() -> None:
    quota = Quota(Ceilings(servers=1))
    message = refusal(quota, [SERVER_2], Holding(SERVER, "local", "gpu", cores=1), "Starting a notebook server")
    assert message is not None
    assert "servers 2 of at most 1 on all backends" in message
    assert "You hold: notebook server on 'local' (2 cores, 4 GB)" in message
    assert refusal(quota, [], Holding(SERVER, "local", "", cores=1), "Starting a notebook server") is None


def test_cores_count_across_servers_and_clusters_and_per_backend() -> None:
    cluster = cluster_holding("hpc", "c1", 2, 1, 2, 0)
    quota = Quota(Ceilings(cores=5), backends={"local": Ceilings(cores=2)})
    assert refusal(quota, [SERVER_2, cluster], Holding(SERVER, "hpc", "x", cores=1), "Start") is None
    message = refusal(quota, [SERVER_2, cluster], Holding(SERVER, "hpc", "x", cores=2), "Start")
    assert message is not None and "cores 6 of at most 5 on all backends" in message
    assert "Dask cluster c1 on 'hpc' (2 workers: 2 cores, 4 GB)" in message
    local = refusal(quota, [SERVER_2], cluster_holding("local", "c2", 1, 1, 1, 0), "Start")
    assert local is not None and "cores 3 of at most 2 on 'local'" in local


def test_a_user_over_a_lowered_ceiling_is_not_refused_what_does_not_add_to_it() -> None:
    quota = Quota(Ceilings(cores=1, clusters=5))
    assert refusal(quota, [SERVER_2], Holding("cluster", "local", "new"), "Starting a Dask cluster") is None


def test_scale_up_fits_or_is_refused_with_the_room_left() -> None:
    quota = Quota(Ceilings(cores=4, memory_gb=100))
    cluster = cluster_holding("local", "c1", 1, 1, 2, 0)
    assert workers_that_fit(quota, [SERVER_2], "local", ONE_CORE) == 2
    assert scale_refusal(quota, [SERVER_2], cluster, 2, ONE_CORE) is None
    message = scale_refusal(quota, [SERVER_2], cluster, 3, ONE_CORE)
    assert message is not None
    assert "Scaling Dask cluster c1 to 3 workers would exceed your quota (cores 5 of at most 4" in message
    assert "At most 2 workers of this size fit." in message
    assert scale_refusal(quota, [SERVER_2], cluster, 1, ONE_CORE) is None  # no growth: never refused
    assert workers_that_fit(None, [SERVER_2], "local", ONE_CORE) is None
    assert workers_that_fit(Quota(Ceilings(cores=1)), [SERVER_2], "local", ONE_CORE) == 0


def test_use_is_shown_against_each_ceiling() -> None:
    quota = Quota(Ceilings(cores=3, clusters=1), backends={"hpc": Ceilings(gpus=1)})
    held = [SERVER_2, cluster_holding("hpc", "c1", 2, 1, 1, 0)]
    assert use_text(quota, held) == "cores 4 of 3, clusters 1 of 1; gpus 0 of 1 on 'hpc'"
    assert use_text(None, held) == "no quota"


def test_thirds_of_a_core_add_up_to_a_whole_one() -> None:
    assert workers_that_fit(Quota(Ceilings(cores=1)), [], "local", per_worker(1 / 3, 0, 0)) == 3


# --- the ledger asks the gateways without blocking its caller's event loop -----------------------


def test_a_silent_gateway_makes_the_ledger_unknown_while_the_loop_keeps_running() -> None:
    """One gateway refuses connections, one accepts and never answers (a real listening socket):
    the ledger names both after its timeout, and the event loop ran other work all the while."""
    import asyncio
    import socket

    from facility import ledger

    with socket.socket() as hung, socket.socket() as closed:
        hung.bind(("127.0.0.1", 0))
        hung.listen()  # the kernel completes connections; nobody ever reads or answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        gateways = {
            "hung": (f"http://127.0.0.1:{hung.getsockname()[1]}", "t"),
            "down": (f"http://127.0.0.1:{closed.getsockname()[1]}", "t"),
        }

        async def ask() -> tuple[str, int, float]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            start = time.monotonic()
            with pytest.raises(ledger.LedgerUnavailable) as unknown:
                await ledger.gateway_clusters(gateways, "alice")
            waited = time.monotonic() - start
            ticker.cancel()
            return str(unknown.value), ticks, waited

        message, ticks, waited = asyncio.run(ask())
    assert message == "the Dask gateway of 'hung', 'down' did not answer"
    assert ledger.TIMEOUT_S - 0.5 < waited < ledger.TIMEOUT_S + 2  # both asked at once: one timeout, not two
    assert ticks >= 0.8 * waited / 0.05, ticks  # the loop was free while it waited


def test_a_run_counts_while_its_process_lives(tmp_path) -> None:
    import json
    import os
    import subprocess

    from facility import runs
    from facility.quota import RUN

    run = Holding(RUN, "local", "r1", cores=1, memory_gb=2)
    with runs.recorded(tmp_path, "alice", run):
        assert runs.running(tmp_path, "alice") == [run]
        assert runs.running(tmp_path, "alice", but=str(os.getpid())) == []  # a run asking about the others
        assert runs.running(tmp_path, "bob") == []
    assert runs.running(tmp_path, "alice") == []
    dead = subprocess.Popen(["true"])  # a process that has ended: its record no longer counts
    dead.wait()
    stale = {"pid": dead.pid, "started": time.time(), "backend": "local", "name": "r2", "cores": 1, "memory_gb": 1}
    (tmp_path / "alice" / f"{dead.pid}.json").write_text(json.dumps(stale))
    assert runs.running(tmp_path, "alice") == []
    with pytest.raises(ValueError, match="is not a user name"):
        runs.running(tmp_path, "../etc")


# --- a real facility: alice's quota is 3 cores, 1 cluster, 1 af run----------------------------------

SERVER_OPTIONS = {"backend": "local", "memory_gb": 1, "image": "coffea-2026"}
USAGE_INTERVAL = 2  # seconds between the usage sampler's samples
PARTICIPANT = "use-01"  # of the event `use`, whose instructor is bob


@pytest.fixture(scope="module")
def running(start_facility):
    raw = copy.deepcopy(embedded_raw())
    raw["quotas"] = {"default": {"cores": 3, "clusters": 1, "runs": 1}}
    # No metrics: `af status` lists users and their quota use from the ledger all the same.
    raw["usage"] = {"sample_interval_seconds": USAGE_INTERVAL}
    running = start_facility(raw)
    remove_account(PARTICIPANT, facility.load(running.facility_file).auth.unix_accounts)  # none of an earlier run
    return running


@pytest.fixture(scope="module")
def alice(running):
    session = running.login("alice")
    reply = session.api("POST", "/users/alice/server", json={**SERVER_OPTIONS, "cores": 1})
    assert reply.status_code in (201, 202), reply.text
    session.wait_ready()
    return session


@pytest.fixture(scope="module")
def gateway(running, alice):
    from dask_gateway import Gateway, JupyterHubAuth

    with Gateway(running.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=alice.token())) as gw:
        yield gw


@pytest.fixture(scope="module")
def cluster(running, gateway):
    """alice's one cluster, "ttbar fit", two workers of 1 core: with her 1-core server, all 3 cores of her
    quota. Refusals name it by that name, not by its id."""
    cluster = gateway.new_cluster(
        worker_cores=1, worker_memory_gb=1, outlive_server=True, shutdown_on_close=False, cluster_name="ttbar fit"
    )
    cluster.scale(2)
    # The scheduler reports its new count at once (a heartbeat); the ledger counts from then on.
    wait_until(lambda: held_workers(running, cluster.name) == 2, "the gateway to count 2 workers")
    yield cluster
    gateway.stop_cluster(cluster.name)


def held_workers(running, name: str) -> int:
    """Workers of alice's cluster as the gateway's ledger route says (what the hub reads)."""
    gw = running.runtime["gateways"]["local"]
    reply = requests.get(
        f"{gw['url']}/api/af/clusters/alice", headers={"Authorization": f"Bearer {gw['api_token']}"}, timeout=10
    )
    reply.raise_for_status()
    return next(c["workers"] for c in reply.json()["clusters"] if c["name"] == name)


def _answers(check) -> bool:
    try:
        return check()
    except requests.RequestException:
        return False


def wait_until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.5)


def test_a_scale_up_past_the_quota_is_refused_naming_the_server_and_the_cluster(cluster) -> None:
    from dask_gateway import GatewayClusterError

    with pytest.raises(GatewayClusterError) as refused:
        cluster.scale(3)
    message = str(refused.value)
    assert "Scaling Dask cluster 'ttbar fit' to 3 workers would exceed your quota" in message
    assert "cores 4 of at most 3 on all backends" in message and "At most 2 workers of this size fit" in message
    assert "notebook server on 'local' (1 cores, 1 GB)" in message
    assert "Dask cluster 'ttbar fit' on 'local' (2 workers: 2 cores, 2 GB)" in message


def test_af_status_shows_what_alice_holds_against_her_quota(running, cluster) -> None:
    """Without metrics enabled, from the ledger the hub and the gateways consult."""
    assert not running.runtime.get("metrics")
    status = " ".join(running.af("status", check=False).stdout.split())
    assert "Users holding servers, Dask clusters or runs" in status, status
    assert "quota use" in status and "cores 3 of 3, clusters 1 of 1, runs 0 of 1" in status, status
    assert "│ alice │ local: 1 cores, 1 GB │" in status, status
    assert f"│ local: {cluster.name}, 2 workers (2 cores, 2 GB) │ - │" in status, status


def test_adaptive_scaling_is_capped_at_the_quota(running, cluster) -> None:
    cluster.adapt(minimum=4, maximum=4)  # the scheduler asks for 4 workers at each heartbeat
    try:
        log = running.state_dir / "logs" / "gateway-local.log"
        capped = f"Quota: cluster {cluster.name} of alice asked for 4 workers; 2 fit"
        wait_until(lambda: capped in log.read_text(errors="replace"), "the gateway capping the adaptive target")
        assert held_workers(running, cluster.name) == 2
    finally:
        cluster.scale(2)  # adaptive off again


def test_a_second_cluster_is_refused_naming_the_first(gateway, cluster) -> None:
    with pytest.raises(ValueError, match="Starting a Dask cluster on 'local' would exceed your quota") as refused:
        gateway.new_cluster(shutdown_on_close=False)
    assert "clusters 2 of at most 1 on all backends" in str(refused.value)
    assert "Dask cluster 'ttbar fit' on 'local'" in str(refused.value)
    assert [c.name for c in gateway.list_clusters()] == [cluster.name]


# --- usage: the same holdings, sampled every USAGE_INTERVAL s -------------------------------------


def test_usage_grows_by_held_cores_times_the_time_between_samples(running, alice, cluster) -> None:
    """With nothing started or stopped, alice's server's core-seconds grow by 1 × the seconds counted
    between the samples and her cluster's by 2 × (two 1-core workers), to the microsecond: the time
    between samples, each step at most CAP_INTERVALS intervals (on a busy host a sample may come
    late, and what it did not see is not made up). The sampler's clock agrees with the test's."""
    wait_until(lambda: running_workers(running, "alice") == 2, "alice's 2 workers running", timeout=60)
    with sample_times(running) as times:
        last_a, a = recorded(running, "alice")
        wall_a = time.time()
        time.sleep(5 * USAGE_INTERVAL)
        last_b, b = recorded(running, "alice")
        wall_b = time.time()
    times = between(times, last_a, last_b)
    seconds, elapsed = counted(times, USAGE_INTERVAL), last_b - last_a
    server_cores, server_gb = grown(a, b, SERVER)
    cluster_cores, cluster_gb = grown(a, b, CLUSTER)
    print(
        f"usage: {len(times) - 1} samples over {elapsed:.2f} s ({wall_b - wall_a:.2f} s wall), {seconds:.3f} s "
        f"counted; server {server_cores:.3f} core-s (expected {seconds:.3f}), cluster {cluster_cores:.3f} "
        f"core-s (expected {2 * seconds:.3f})"
    )
    assert len(times) >= 3 and abs(elapsed - (wall_b - wall_a)) <= 2 * USAGE_INTERVAL + 1, (times, wall_b - wall_a)
    assert server_cores == pytest.approx(1 * seconds, abs=1e-6)
    assert cluster_cores == pytest.approx(2 * seconds, abs=1e-6)
    assert server_gb == pytest.approx(server_cores) and cluster_gb == pytest.approx(cluster_cores)
    assert b[SERVER][2] == 0 and b[CLUSTER][2] == 0  # no GPUs held, none counted
    assert stat.S_IMODE(os.stat(usage_path(running.state_dir)).st_mode) == 0o600


def test_af_usage_prints_alices_line_and_a_plot(running, alice, cluster, tmp_path) -> None:
    _, mine = recorded(running, "alice")
    shown = running.af("usage", "--by", "user", "--plot", str(tmp_path / "usage.png"))
    lines = [" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()]
    alice_line = next((line for line in lines if line.startswith("alice ")), None)
    assert alice_line is not None, shown.stdout
    assert float(alice_line.split()[1]) >= sum(v[0] for v in mine.values()) / 3600 - 0.001, (alice_line, mine)
    assert (tmp_path / "usage.png").read_bytes()[:4] == b"\x89PNG"
    later = running.af("usage", "--since", (dt.date.today() + dt.timedelta(days=2)).isoformat(), check=False)
    assert later.returncode == 1 and "no usage recorded since" in later.stderr, later.stderr


def test_the_usage_page_shows_an_admin_everyone_and_refuses_a_user_in_words(running, alice, cluster) -> None:
    admin = running.login("admin", running.admin_password)
    page = admin.http.get(f"{running.url}/hub/usage?by=user", timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    assert "Core-hours, memory GB-hours and GPU-hours of every user" in page.text
    assert "<td>alice</td>" in page.text and 'href="/hub/usage"' in page.text  # her row; the admin's nav link
    assert 'href="/hub/usage"' not in alice.http.get(f"{running.url}/hub/home", timeout=30).text  # not hers
    refused = alice.http.get(f"{running.url}/hub/usage", timeout=30)
    assert refused.status_code == 403
    assert "The usage page is for the facility&#39;s admins" in refused.text, refused.text[-2000:]
    bad = admin.http.get(f"{running.url}/hub/usage?by=kind&since=yesterday", timeout=30)
    assert bad.status_code == 400 and "&#39;kind&#39; is not a way to sum usage" in bad.text


def test_an_instructor_sees_only_the_participants_use(running, alice, cluster, tmp_path) -> None:
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
        wait_until(lambda: SERVER in recorded(running, PARTICIPANT)[1], "the participant's use recorded")
        page = running.login("bob").http.get(f"{running.url}/hub/usage", timeout=30)
        assert page.status_code == 200, page.text[-2000:]
        assert "of the participants of use" in page.text
        assert f"<td>{PARTICIPANT}</td>" in page.text and "<td>alice</td>" not in page.text
    finally:
        running.af("event", "end", "use")


def test_the_usage_page_in_a_browser_light_and_dark(running, alice, cluster) -> None:
    """An admin's /hub/usage in the light and the dark theme: the table's text readable (WCAG 4.5),
    alice's bar drawn. Screenshots in test-artifacts/usage/."""
    from tests.browser import chromium_page, contrast_of, emptied_artifacts, sync_api_or_skip

    sync_api_or_skip()
    shots = emptied_artifacts("usage")
    with chromium_page(1280, 800) as page:
        log_in(page, running.url, "admin", running.admin_password)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.goto(f"{running.url}/hub/usage")
            assert page.evaluate("document.documentElement.getAttribute('data-bs-theme')") == scheme
            row = page.locator("#af-usage-table tbody tr", has_text="alice")
            for cell in ("td", "td.num"):
                ratio = contrast_of(row.locator(cell))
                assert ratio >= 4.5, f"{scheme}: {cell} contrast {ratio:.2f}"
            assert row.locator(".af-usage-bar").bounding_box()["width"] > 0
            page.screenshot(path=shots / f"usage-{scheme}.png", full_page=True)


def test_after_restarts_the_ledger_counts_the_same(running, alice, cluster) -> None:
    """The gateway reads alice's server from the restarted hub and her cluster from its own reloaded
    database: still refused, still naming both, neither lost nor counted twice. The usage sampler,
    restarted with them, goes on from its last recorded sample (its time is in the file): while
    the hub and the gateway do not answer nothing is recorded, and the step after counts at most
    CAP_INTERVALS intervals, so each second of alice's server is counted once or (while nothing
    could be sampled) not at all."""
    from dask_gateway import GatewayClusterError

    from tests.supervision import supervisor

    with sample_times(running) as times:
        last_a, a = recorded(running, "alice")
        restarted = supervisor(running, "restart", "hub", "gateway-local", "af-usage")
        assert "hub: stopped" in restarted and "gateway-local: stopped" in restarted, restarted
        assert "af-usage: stopped" in restarted and "af-usage: started" in restarted, restarted
        wait_until(lambda: requests.get(f"{running.url}/hub/health", timeout=5).ok, "the restarted hub", timeout=60)
        wait_until(
            lambda: _answers(lambda: held_workers(running, cluster.name) == 2), "the restarted gateway", timeout=60
        )
        back = time.time()
        wait_until(lambda: times[-1] > back + USAGE_INTERVAL, "a sample after the restarts")
        last_b, b = recorded(running, "alice")
    times = between(times, last_a, last_b)
    server_cores, _ = grown(a, b, SERVER)
    gap = max(later - earlier for earlier, later in itertools.pairwise(times))
    print(
        f"usage over the restarts: {server_cores:.3f} core-s recorded, {counted(times, USAGE_INTERVAL):.3f} s "
        f"counted of {last_b - last_a:.3f} s; the longest time between two samples {gap:.1f} s"
    )
    assert all(b[kind][0] >= a[kind][0] for kind in a)  # nothing recorded was lost
    assert server_cores == pytest.approx(counted(times, USAGE_INTERVAL), abs=1e-6)  # once each, gaps capped
    log = (running.state_dir / "logs" / "af-usage.log").read_text()
    assert log.count(f"sampling every {USAGE_INTERVAL} s into {usage_path(running.state_dir)}") == 2
    with pytest.raises(GatewayClusterError, match=r"notebook server on 'local' \(1 cores, 1 GB\)"):
        cluster.scale(3)
    cluster.scale(1)  # a scale down is never refused
    wait_until(lambda: held_workers(running, cluster.name) == 1, "the cluster's count to drop to 1")
    cluster.scale(2)  # and growing back within the quota is allowed
    wait_until(lambda: held_workers(running, cluster.name) == 2, "the cluster's count to grow back to 2")


def test_a_server_past_the_quota_is_refused_naming_the_cluster(running, alice, cluster) -> None:
    alice.stop_server()  # the cluster outlives it (outlive_server) and keeps 2 of her 3 cores
    assert held_workers(running, cluster.name) == 2
    message = refused_spawn(alice, {**SERVER_OPTIONS, "cores": 2})
    assert "Cannot start your server: Starting a notebook server on 'local' would exceed your quota" in message
    assert "cores 4 of at most 3 on all backends" in message
    assert "You hold: Dask cluster 'ttbar fit' on 'local' (2 workers: 2 cores, 2 GB)" in message
    assert alice.server() is None


def refused_spawn(session, options: dict[str, Any]) -> str:
    """The message of a REST spawn the hub refuses: at once (403/503), or, since the quota check
    awaits the gateways, as the failed spawn's last progress event after a 202 (or a 201: the hub
    says 201 when the spawn is no longer pending as it answers, which a quick failure also is)."""
    from tests.batch_helpers import spawn_outcome

    reply = session.api("POST", f"/users/{session.username}/server", json=options)
    if reply.status_code in (403, 503):
        return reply.json()["message"]
    assert reply.status_code in (201, 202), reply.text
    outcome = spawn_outcome(session, timeout=60)
    assert outcome.get("failed"), outcome
    return outcome["message"]


def test_the_spawn_form_comes_back_with_the_message(running, alice, cluster) -> None:
    """In a real browser: alice asks for 2 cores in the form; it comes back saying what she holds."""
    from tests.browser import chromium_page, emptied_artifacts, sync_api_or_skip

    sync_api = sync_api_or_skip()
    shots = emptied_artifacts("quota")
    with chromium_page(1280, 900) as page:
        log_in(page, running.url, "alice", running.password_of("alice"))
        page.goto(f"{running.url}/hub/spawn")
        page.fill("#af-local-cores", "2")
        page.click('form button[type="submit"]')
        text = page.locator("body")
        sync_api.expect(text).to_contain_text("would exceed your quota (cores 4 of at most 3 on all backends)")
        sync_api.expect(text).to_contain_text("You hold: Dask cluster 'ttbar fit' on 'local' (2 workers")
        sync_api.expect(text).not_to_contain_text("HTTP 403")  # words for a person, not a status code
        page.screenshot(path=shots / "01-spawn-form-over-quota.png", full_page=True)
    assert alice.server() is None


def test_a_server_that_fits_starts(alice) -> None:
    reply = alice.api("POST", "/users/alice/server", json={**SERVER_OPTIONS, "cores": 1})
    assert reply.status_code in (201, 202), reply.text
    alice.wait_ready()


# --- a gateway that is down or hangs: the spawn is refused in words; the hub keeps answering -------


def hub_answer_times(running, seconds: float) -> list[float]:
    """How long the hub takes to answer /hub/health, asked again and again for `seconds`."""
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.monotonic()
        requests.get(f"{running.url}/hub/health", timeout=10).raise_for_status()
        times.append(time.monotonic() - start)
        time.sleep(0.1)
    return times


def test_a_hung_gateway_does_not_stall_the_hub_and_refuses_the_spawn(running, alice) -> None:
    """The gateway's process is stopped (SIGSTOP): it accepts connections and never answers. The
    quota check waits its 3 s for it on the hub's event loop; meanwhile the hub answers others."""
    import os
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from tests.supervision import pid_of

    alice.stop_server()
    pid = pid_of(running, "gateway-local")
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            spawn = pool.submit(refused_spawn, alice, {**SERVER_OPTIONS, "cores": 1})
            times = hub_answer_times(running, 2.5)
            message = spawn.result(timeout=60)
            waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"hung gateway: refused after {waited:.1f} s; hub answered {len(times)} times, slowest {max(times):.3f} s")
    assert "Cannot check your quota right now: the Dask gateway of 'local' did not answer" in message, message
    assert "Try again in a minute" in message
    assert max(times) < 1.0, times  # with the old blocking call: one answer after ~3 s
    assert alice.server() is None


def test_a_stopped_gateway_refuses_the_spawn_with_a_plain_message(running, alice, cluster) -> None:
    from tests.supervision import supervisor

    assert "gateway-local: stopped" in supervisor(running, "stop", "gateway-local")
    try:
        message = refused_spawn(alice, {**SERVER_OPTIONS, "cores": 1})
        assert message.removeprefix("Spawn failed: ") == (
            "Cannot check your quota right now: the Dask gateway of 'local' did not answer. Try again in a minute."
        ), message  # plain words, no "HTTP 503"
        assert alice.server() is None
    finally:
        supervisor(running, "start", "gateway-local")
    wait_until(lambda: _answers(lambda: held_workers(running, cluster.name) == 2), "the gateway back", timeout=60)


# --- `af run` counts against the same quota ------------------------------------------------------

WAIT_FOR = "import pathlib, time\ngo = ''\nlimit = 120"
UNTIL_GO = (
    "start = time.time()\n"
    "while go and not pathlib.Path(go).exists() and time.time() - start < limit:\n"
    "    time.sleep(0.2)"
)


def af_run_as(running, user: str, notebook, run_dir, *args: str, backend: str = "local", wait: bool = True):
    """`af run` as `user` would from their notebook server (JUPYTERHUB_USER)."""
    import os
    import subprocess

    from tests.harness import AF, ROOT

    env = {**os.environ, "AF_STATE_DIR": str(running.state_dir), "JUPYTERHUB_USER": user, "COLUMNS": "200"}
    argv = [*AF, "run", str(notebook), "--backend", backend, "--run-dir", str(run_dir), *args]
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)


def alice_runs(running) -> list[Holding]:
    from facility import runs

    return runs.running(runs.runs_dir(running.state_dir), "alice")


def test_an_af_run_past_the_quota_is_refused_before_anything_runs(running, alice, cluster, tmp_path) -> None:
    from tests.batch_helpers import write_notebook

    wait_until(lambda: _answers(lambda: held_workers(running, cluster.name) == 2), "alice's 2 workers")
    reply = alice.api("POST", "/users/alice/server", json={**SERVER_OPTIONS, "cores": 1})
    assert reply.status_code in (201, 202), reply.text
    alice.wait_ready()  # with her cluster's 2 workers: all 3 cores of her quota
    notebook = write_notebook(tmp_path / "hello.ipynb", "x = 1", "print('ran')")
    result = af_run_as(running, "alice", notebook, tmp_path / "out")
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Starting af run out on 'local' would exceed your quota (cores 4 of at most 3 on all backends)" in said
    assert "notebook server on 'local' (1 cores, 1 GB)" in said
    assert "Dask cluster 'ttbar fit' on 'local' (2 workers: 2 cores, 2 GB)" in said
    assert not (tmp_path / "out").exists(), "the refused run made its folder"
    assert alice_runs(running) == []


def test_a_run_under_way_counts_for_the_hub_the_gateway_and_other_runs(running, alice, cluster, tmp_path) -> None:
    from dask_gateway import GatewayClusterError

    from tests.batch_helpers import write_notebook

    alice.stop_server()
    cluster.scale(1)
    wait_until(lambda: held_workers(running, cluster.name) == 1, "alice's cluster at 1 worker")
    go = tmp_path / "go"
    notebook = write_notebook(tmp_path / "wait.ipynb", WAIT_FOR, UNTIL_GO, "print('done')")
    first = af_run_as(running, "alice", notebook, tmp_path / "first", "-p", "go", str(go), wait=False)
    try:
        wait_until(lambda: len(alice_runs(running)) == 1 or first.poll() is not None, "the run's record")
        assert first.poll() is None, first.communicate()
        counted = "af run first on 'local' (1 cores, 2 GB)"
        # the gateway: her run's core and her cluster's leave room for 1 more worker, not 2
        with pytest.raises(GatewayClusterError, match="At most 2 workers of this size fit") as refused:
            cluster.scale(3)
        assert counted in str(refused.value)
        # the hub: a 2-core server would make 4
        message = refused_spawn(alice, {**SERVER_OPTIONS, "cores": 2})
        assert "cores 4 of at most 3 on all backends" in message and counted in message, message
        # another run: 2 runs of at most 1
        second = af_run_as(running, "alice", notebook, tmp_path / "second")
        said = " ".join(second.stderr.split())
        assert second.returncode == 1 and "runs 2 of at most 1 on all backends" in said and counted in said, said
        status = " ".join(running.af("status", check=False).stdout.split())
        assert "cores 2 of 3, clusters 1 of 1, runs 1 of 1" in status, status
    finally:
        go.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert alice_runs(running) == []  # its record went with it
