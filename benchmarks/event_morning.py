"""A workshop's morning (issue 19): every participant of an event logs in at once and runs a first cell.

    .venv/bin/python -m benchmarks.event_morning [--participants 10,30,50] [--concurrent 4]
                                                 [--no-prewarm] [--out benchmarks/results]

Run as root (per-user Unix accounts), alone on the machine. One real facility (`af up`, embedded
facility.yaml, per-user accounts; benchmarks/storm.py's `storm_facility`) in this run. First one participant
alone without pre-warming (the baseline), then for each size N twice: cold (each participant's
login starts nothing; they post the spawn form themselves) and pre-warmed (`af event prewarm`
starts every participant's server first, timed). Each round is a new event (`af event create`,
the allowance `--max cores=1`, a small local folder of materials), so its participants are new
hub users and new Unix accounts. All N participants start together and each, as a person at the
workshop does: logs in with the handout's password; posts the spawn form with the event's
defaults and reads the spawn page's event stream until ready, unless the server already runs;
opens the server, which lands on the event's nbgitpuller link, and pulls the materials as that
page does; starts a kernel and runs one cell over the kernel websocket that reads the pulled data
file. Per round: fraction of participants whose cell ran, login / spawn / pull / first-cell /
start-to-first-output latency p50/p95/max, `af event prewarm`'s wall time, the hub's CPU time per
wall second, and the resident memory per idle notebook server; p50s also as ratios to the baseline.
The largest size whose every participant ran their cell is "the largest N that fits", bounded by
the sizes tried. Writes event_morning.json and event_morning.png. Events are ended (`af event
end`), the facility stopped and the participants' Unix accounts removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

import facility
from benchmarks.results_io import RESULTS, write_results
from benchmarks.storm import TIMEOUT_S, storm_facility
from facility.accounts import lookup, remove_account
from facility.events import MAX_PARTICIPANTS, EventStore, events_path
from facility.model import Spawn, UnixAccounts
from tests.event_helpers import create_event, handout_logins, landing_of, pull_through_landing, window
from tests.harness import HubSession, RunningFacility, execute_in_kernel, run_af
from tests.spawn_storm import QUEUED, UserOutcome, follow_progress, message_of, percentile
from tests.supervision import pid_of

# The materials: one notebook whose one cell reads the data file, as a first exercise would. The
# benchmark runs that cell from the server's root (the account's home), where the event's folder is.
NUMBERS = list(range(1, 101))
CELL = "import os\nprint(sum(int(n) for n in open(os.path.expanduser({path!r})).read().split()))"
IDLE_SETTLE_S = 5  # after the last cell: kernels deleted by execute_in_kernel have exited
LATENCIES = ("login", "spawn", "pull", "first_cell", "total")


@dataclass
class Participant:
    name: str
    password: str
    ok: bool = False  # the first cell ran and printed the sum of the data file
    had_server: bool = False  # already running at login (pre-warmed): nothing to spawn
    posted_form: bool = False  # had no server at login and posted the spawn form
    told_to_wait: bool = False  # the spawn page said they wait in line (hub.spawn.concurrent)
    login_s: float | None = None  # released -> login page fetched and login form answered
    spawn_s: float | None = None  # spawn form posted (or login, for a pre-warmed server still starting) -> ready
    pull_s: float | None = None  # server opened on nbgitpuller's link -> pull finished
    first_cell_s: float | None = None  # kernel requested -> cell's output
    total_s: float | None = None  # everyone released together -> cell's output
    error: str | None = None


def write_materials(folder: Path) -> Path:
    """A small course folder: welcome.ipynb (one cell) and data/numbers.txt."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "numbers.txt").write_text("\n".join(map(str, NUMBERS)) + "\n")
    cell = {"cell_type": "code", "execution_count": None, "id": "first", "metadata": {}, "outputs": []}
    cell["source"] = CELL.format(path="data/numbers.txt")
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "welcome.ipynb").write_text(json.dumps(notebook, indent=1))
    return folder


def spawn_defaults(running: RunningFacility, event_name: str) -> dict[str, str]:
    """What the spawn form shows a participant before they change anything: the facility's defaults
    narrowed by the event's allowance (facility.validate_spawn of an empty request), as form fields."""
    event = EventStore(events_path(running.state_dir)).get(event_name)
    if event is None:
        raise RuntimeError(f"af event create made no event {event_name!r}")
    fac = facility.load(running.facility_file)
    request = facility.validate_spawn(fac, {}, {event.group}, False, event.allowance)
    # The form posts only the fields it shows: no GPUs, queue or wall time on the local backend.
    return {key: str(value) for key, value in request.as_options().items() if value not in ("", 0)}


def _morning(
    running: RunningFacility, person: Participant, event_name: str, form: dict[str, str], go: threading.Barrier
) -> None:
    outcome = UserOutcome(person.name)  # what tests.spawn_storm's progress reader fills in
    try:
        go.wait()
        released = time.monotonic()
        session = HubSession.login(running.url, person.name, person.password)
        person.login_s = time.monotonic() - released
        server = session.server()
        person.had_server = bool(server and server.get("ready"))
        if not person.had_server:
            posted = time.monotonic()
            if server is None:  # nothing started for them: the spawn form, as the home page's button leads to
                reply = session.http.post(
                    f"{session.url}/hub/spawn", data={**form, "_xsrf": session.xsrf}, timeout=120, allow_redirects=False
                )
                if reply.status_code != 302:
                    raise RuntimeError(f"spawn form answered {reply.status_code}: {message_of(reply.text)}")
                person.posted_form = True
            # else a pre-warmed server still starting: the hub's page shows its progress; so does this.
            follow_progress(session, outcome, posted, TIMEOUT_S)
            person.told_to_wait = any(QUEUED in m for m in outcome.messages)
            if not outcome.ready:
                raise RuntimeError(outcome.error or "the server did not become ready")
            person.spawn_s = outcome.seconds
            server = session.server()
        if not server:
            raise RuntimeError("the server is gone after it was ready")
        url, token = f"{running.url}{server['url']}", session.token(note="event morning")
        headers = {"Authorization": f"token {token}"}
        opened = time.monotonic()
        pull_through_landing(
            running, landing_of(url, headers), headers
        )  # the default URL is the event's nbgitpuller link
        person.pull_s = time.monotonic() - opened
        asked = time.monotonic()
        output = execute_in_kernel(url, token, CELL.format(path=f"~/{event_name}/data/numbers.txt"))
        person.first_cell_s = time.monotonic() - asked
        person.total_s = time.monotonic() - released
        if output.strip() != str(sum(NUMBERS)):
            raise RuntimeError(f"the cell printed {output.strip()[:80]!r}, not {sum(NUMBERS)}")
        person.ok = True
    except Exception as exc:  # noqa: BLE001 - one participant's failure is that participant's result
        person.error = f"{type(exc).__name__}: {str(exc)[:300]}"


def _hub_cpu_s(hub: psutil.Process) -> float:
    # The hub's own CPU time: its notebook servers are its children, but their time counts in
    # children_* only once they exit and are reaped, so user + system is the hub alone.
    times = hub.cpu_times()
    return times.user + times.system


def idle_memory(names: list[str], accounts: UnixAccounts) -> dict[str, float]:
    """Resident memory (MiB) of each participant's processes: with per-user accounts everything
    running as a participant's account is their server's process tree (server, kernels left over)."""
    uids = {}
    for name in names:
        account = lookup(name, accounts)
        if account is not None:
            uids[account.uid] = name
    rss: dict[str, float] = {}
    for proc in psutil.process_iter(["uids", "memory_info"]):
        info = proc.info
        if info["uids"] is None or info["memory_info"] is None or info["uids"].real not in uids:
            continue
        name = uids[info["uids"].real]
        rss[name] = rss.get(name, 0.0) + info["memory_info"].rss / 2**20
    return rss


def _latencies(people: list[Participant]) -> dict[str, float | None]:
    summary: dict[str, float | None] = {}
    for key in LATENCIES:
        values = sorted(round(v, 2) for p in people if (v := getattr(p, f"{key}_s")) is not None)
        summary[f"{key}_p50_s"] = percentile(values, 50)
        summary[f"{key}_p95_s"] = percentile(values, 95)
        summary[f"{key}_max_s"] = values[-1] if values else None
    return summary


def one_round(
    running: RunningFacility, root: Path, materials: Path, name: str, size: int, prewarm: bool, everyone: list[str]
) -> dict[str, Any]:
    """One event of `size` participants, pre-warmed or not; every participant's morning, measured."""
    create_event(running, root, name, *window(-1, 120), "--participants", str(size),
            "--max", "cores=1", "--materials", str(materials))  # fmt: skip
    logins = handout_logins(root, name)
    everyone += sorted(logins)  # removed at the end, whatever happens from here
    form = spawn_defaults(running, name)
    hub = psutil.Process(pid_of(running, "hub"))
    result: dict[str, Any] = {"participants": size, "prewarmed": prewarm, "event": name, "spawn_form": form}
    if prewarm:
        cpu, started = _hub_cpu_s(hub), time.monotonic()
        # Generous timeout: a slow prewarm is a result; af's own limit comes first.
        warmed = run_af(running.state_dir, "event", "prewarm", name, "--timeout", str(TIMEOUT_S),
                        timeout=TIMEOUT_S + 120, check=False)  # fmt: skip
        wall = time.monotonic() - started
        # Its final line says how it went: on stdout when all are ready, the error on stderr otherwise.
        lines = (warmed.stdout if warmed.returncode == 0 else warmed.stderr or warmed.stdout).strip().splitlines()
        result |= {
            "prewarm_s": round(wall, 2),
            "prewarm_ok": warmed.returncode == 0,
            "prewarm_last_line": lines[-1] if lines else "",
            "prewarm_hub_cpu_fraction": round((_hub_cpu_s(hub) - cpu) / wall, 3),
        }
        print(f"{name}: af event prewarm exited {warmed.returncode} after {wall:.1f} s: {result['prewarm_last_line']}")
    people = [Participant(n, p) for n, p in sorted(logins.items())]
    go = threading.Barrier(size)
    threads = [threading.Thread(target=_morning, args=(running, p, name, form, go), daemon=True) for p in people]
    cpu, started = _hub_cpu_s(hub), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S + 300)  # a participant still busy after this counts as failed
    wall = time.monotonic() - started
    hub_cpu = _hub_cpu_s(hub) - cpu
    time.sleep(IDLE_SETTLE_S)
    rss = idle_memory([p.name for p in people], facility.load(running.facility_file).auth.unix_accounts)
    ended = run_af(running.state_dir, "event", "end", name, "--timeout", "300", timeout=420, check=False)
    succeeded = sum(p.ok for p in people)
    result |= {
        "succeeded": succeeded,
        "success_fraction": succeeded / size,
        **_latencies(people),
        "posted_form": sum(p.posted_form for p in people),
        "had_server": sum(p.had_server for p in people),
        "told_to_wait": sum(p.told_to_wait for p in people),
        "wall_s": round(wall, 2),
        "hub_cpu_fraction": round(hub_cpu / wall, 3),  # CPU seconds per wall second: 1.0 is one core
        "idle_servers": len(rss),
        "mib_per_idle_server": round(sum(rss.values()) / len(rss), 1) if rss else None,
        "end_ok": ended.returncode == 0,
        "errors": sorted({p.error for p in people if p.error}),
        "people": [{k: v for k, v in asdict(p).items() if k != "password"} for p in people],
    }
    print(
        f"{name}: {succeeded}/{size} ran their first cell, login p50 {result['login_p50_s']} s, spawn p50 "
        f"{result['spawn_p50_s']} p95 {result['spawn_p95_s']} s, first cell p50 {result['first_cell_p50_s']} s, "
        f"start to output p50 {result['total_p50_s']} p95 {result['total_p95_s']} max {result['total_max_s']} s, "
        f"hub CPU {result['hub_cpu_fraction']}, {result['mib_per_idle_server']} MiB per idle server",
        flush=True,
    )
    if result["errors"]:
        print(f"{name}: errors: {result['errors']}", flush=True)
    return result


def largest_fitting(rounds: list[dict[str, Any]], prewarmed: bool) -> int | None:
    """The largest size tried whose every participant ran their first cell; None if none did."""
    fits = [r["participants"] for r in rounds if r["prewarmed"] == prewarmed and r["success_fraction"] == 1.0]
    return max(fits, default=None)


def run(sizes: list[int], concurrent: int, prewarm: bool) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:5]  # event and so account names of this run only: nothing shared with the tests'
    everyone: list[str] = []
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="af-bench-morning-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # per-user accounts pass through to the project's venv and state
        materials = write_materials(root / "course")
        accounts = UnixAccounts()  # what storm_facility's facility.yaml asks for (per-user, default prefix)
        running = storm_facility(root, concurrent)
        try:
            accounts = facility.load(running.facility_file).auth.unix_accounts
            baseline = one_round(running, root, materials, f"m{run_id}-base", 1, False, everyone)
            for size in sizes:
                for warm in (False, True) if prewarm else (False,):
                    name = f"m{run_id}-{size}{'p' if warm else 'c'}"
                    rounds.append(one_round(running, root, materials, name, size, warm, everyone))
        finally:
            run_af(running.state_dir, "down", check=False)
            for name in everyone:
                remove_account(name, accounts)
    for entry in rounds:
        for key in LATENCIES:
            base, value = baseline[f"{key}_p50_s"], entry[f"{key}_p50_s"]
            entry[f"{key}_p50_ratio"] = round(value / base, 2) if value is not None and base else None
    fitting = {"without_prewarm": largest_fitting(rounds, False)}
    if prewarm:
        fitting["with_prewarm"] = largest_fitting(rounds, True)
    tried = ", ".join(map(str, sizes))
    said = "; ".join(
        f"{'with' if k == 'with_prewarm' else 'without'} pre-warming: {v or 'none'}" for k, v in fitting.items()
    )
    statement = (
        f"Largest N that fits (every participant ran their first cell): {said} (bounded by the sizes tried: {tried})"
    )
    print(statement, flush=True)
    return {
        "benchmark": "event_morning",
        "baseline": baseline,
        "rounds": rounds,
        "largest_fitting": fitting,
        "largest_fitting_statement": statement,
        "sizes_tried": sizes,
        "hub_spawn": {"concurrent": concurrent, "defaults": Spawn().__dict__},
        "machine": {"node": platform.node(), "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0))},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ok_ax, total_ax, part_ax, hub_ax) = plt.subplots(1, 4, figsize=(19, 4.4))
    mem_ax = hub_ax.twinx()
    base = report["baseline"]
    # One colour per quantity, one line style per mode (cold: circles, solid; pre-warmed: squares, dashed).
    colours = {"p50": "tab:blue", "p95": "tab:orange", "login": "tab:green", "first_cell": "tab:purple"}
    for warm, style in ((False, "o-"), (True, "s--")):
        entries = [r for r in report["rounds"] if r["prewarmed"] == warm]
        if not entries:
            continue
        mode = "pre-warmed" if warm else "cold"
        sizes = [r["participants"] for r in entries]
        ok_ax.plot(sizes, [r["success_fraction"] for r in entries], style, color="tab:blue", label=mode)
        for pct in ("p50", "p95"):
            values = [r[f"total_{pct}_s"] for r in entries]
            total_ax.plot(sizes, values, style, color=colours[pct], label=f"{pct}, {mode}")
            for key in ("login", "first_cell"):
                values = [r[f"{key}_{pct}_s"] for r in entries]
                faded = 1.0 if pct == "p50" else 0.45
                part_ax.plot(sizes, values, style, color=colours[key], alpha=faded, label=f"{key} {pct}, {mode}")
        if warm:
            total_ax.plot(sizes, [r.get("prewarm_s") for r in entries], "kx", label="af event prewarm (before)")
        hub_ax.plot(sizes, [r["hub_cpu_fraction"] for r in entries], style, color="tab:blue", label=f"hub CPU, {mode}")
        mem_ax.plot(sizes, [r["mib_per_idle_server"] for r in entries], style, color="tab:red", label=f"MiB, {mode}")
    total_ax.axhline(base["total_p50_s"] or 0, color="grey", lw=1, label="1 participant alone, p50")
    ok_ax.set(title="participants whose first cell ran", ylabel="fraction", ylim=(0, 1.05))
    total_ax.set(title="released -> first cell output", ylabel="seconds")
    part_ax.set(title="login; kernel start + first cell", ylabel="seconds")
    hub_ax.set(title="hub CPU (blue); RSS per idle server (red)", ylabel="hub CPU s per wall s", ylim=(0, None))
    # From zero, without an offset: memory per server barely moves, and an offset axis made 0.1 MiB look like a fall.
    memory = [r["mib_per_idle_server"] or 0 for r in report["rounds"]]
    mem_ax.set(ylabel="MiB per idle server", ylim=(0, max(memory, default=1) * 1.3))
    mem_ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    for ax in (ok_ax, total_ax, part_ax, hub_ax):
        ax.set(xlabel="participants at once", xticks=report["sizes_tried"])
    for ax in (ok_ax, total_ax, part_ax):
        ax.legend(fontsize=7)
    hub_ax.legend(fontsize=7, loc="upper left")
    mem_ax.legend(fontsize=7, loc="lower right")
    cores = report["machine"]["cpus"]
    fig.suptitle(f"An event's morning, {cores} cores, hub.spawn.concurrent {report['hub_spawn']['concurrent']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", default="10,30,50", help="event sizes, comma-separated")
    parser.add_argument("--concurrent", type=int, default=Spawn().concurrent, help="hub.spawn.concurrent")
    parser.add_argument(
        "--no-prewarm", dest="prewarm", action="store_false", help="only the cold rounds (no `af event prewarm`)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        sizes = [int(n) for n in args.participants.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--participants takes whole numbers separated by commas, not {args.participants!r}")
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_PARTICIPANTS:
        parser.error(f"--participants: each size must be between 1 and {MAX_PARTICIPANTS} (an event's limit)")
    if len(set(sizes)) != len(sizes):
        parser.error(f"--participants: {args.participants!r} gives a size more than once")
    if args.concurrent < 1:
        parser.error("--concurrent must be at least 1")
    if os.geteuid() != 0:
        parser.error("per-user Unix accounts need root: run as root")
    report = run(sizes, args.concurrent, args.prewarm)
    write_results("event_morning", report, plot, args.out)


if __name__ == "__main__":
    main()
