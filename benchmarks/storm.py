"""Spawn storms: N users log in and start their servers at the same moment.

    .venv/bin/python -m benchmarks.storm [--users 10,30,50] [--concurrent 4] [--out benchmarks/results]

One real facility (`af up`, embedded facility.yaml, per-user Unix accounts) in this run. First one
user alone (the baseline), then each storm size twice: new users (every spawn creates its Unix
account, a first login) and the same users again (accounts exist). Each user logs in, posts the
spawn form and reads the spawn page's event stream as a browser does (tests/spawn_storm.py); a
probe asks the hub's REST API who it is every 0.25 s meanwhile. Per storm: fraction of servers
ready, spawn latency p50/p95/max (form posted -> ready), hub API p95, and how many users were
told they wait in line; latencies also as ratios to the one-user baseline. Before the storms: one
notebook server's start (CPU seconds and memory at its first answer), as now and as before issue 15.
Writes storm.json and storm.png. The accounts are removed at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.startup import start_facility
from facility.accounts import remove_account
from facility.model import Spawn, UnixAccounts
from tests.harness import RunningFacility, embedded_raw, run_af
from tests.spawn_storm import stop_servers, storm

TIMEOUT_S = 600  # per user: generous, a storm that takes longer counts as not ready

# One notebook server's start, to its first answer: as the facility starts it now (the rfc3987-syntax
# grammar blocked by hub_config.singleuser, Dask imported by the panel only when used), and as it
# did before issue 15 (the grammar built by jsonschema, dask-gateway and distributed imported by the
# panel's server extension at start). Both load jupyterhub.singleuser, as the real command does.
SERVER = """
import sys
{prelude}
from jupyter_server.serverapp import main
sys.exit(main())
"""
PRELUDES = {
    "before": "import jupyterhub.singleuser, dask_backends.client",
    "now": "import hub_config.singleuser",
}


def server_start(prelude: str, workdir: Path) -> dict[str, float]:
    """CPU seconds and resident memory of a jupyter server (with the facility's extensions) when it
    first answers; CPU time, not wall time, because other work shares the machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "AF_DASK_GATEWAYS": "{}", "JUPYTER_RUNTIME_DIR": str(workdir)}
    argv = [sys.executable, "-c", SERVER.format(prelude=prelude), f"--port={port}", "--ServerApp.token="]
    argv += ["--ServerApp.allow_root=True", "--no-browser", f"--ServerApp.root_dir={workdir}"]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    started = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() - started > 300:
                    raise RuntimeError("the notebook server did not answer in 300 s") from None
                time.sleep(0.05)
        wall = time.monotonic() - started
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
    finally:
        server.terminate()
        server.wait(30)
    return {"cpu_s": cpu, "rss_mib": round(rss_kib / 1024, 1), "wall_s": round(wall, 2)}


def server_starts(workdir: Path, repeats: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, prelude in PRELUDES.items():
        runs = [server_start(prelude, workdir) for _ in range(repeats)]
        results[label] = {
            "runs": runs,
            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
            "rss_mib": round(statistics.median(r["rss_mib"] for r in runs), 1),
        }
        print(f"server start, {label}: {results[label]['cpu_s']} s CPU, {results[label]['rss_mib']} MiB", flush=True)
    return results


def storm_facility(root: Path, concurrent: int) -> RunningFacility:
    """The embedded facility with per-user accounts and `concurrent` servers starting at once, up in `root`."""
    raw = copy.deepcopy(embedded_raw())
    raw["hub"] = {**raw["hub"], "spawn": {"concurrent": concurrent}}
    raw["auth"]["unix_accounts"] = {"mode": "per-user"}
    # A storm is a tutorial's first minute: participants log in with the event's shared password.
    raw["auth"]["shared_password"] = True
    return start_facility(raw, root)


def _one(running: RunningFacility, label: str, names: list[str]) -> dict[str, Any]:
    result = storm(running, names, timeout=TIMEOUT_S)
    stop_servers(running, names)
    summary = {"label": label, **result.summary()}
    print(
        f"{label}: {summary['ready']}/{summary['users']} ready, spawn p50 {summary['spawn_p50_s']} "
        f"p95 {summary['spawn_p95_s']} max {summary['spawn_max_s']} s, hub API p95 {summary['hub_api_p95_s']} s",
        flush=True,
    )
    return summary


def run(sizes: list[int], concurrent: int) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:5]
    everyone: list[str] = []
    storms: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="af-bench-storm-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # per-user accounts pass through to the project's venv and state
        starts = server_starts(root)
        running = storm_facility(root, concurrent)
        try:
            baseline_user = [f"sb{run_id}base"]
            everyone += baseline_user
            baseline = _one(running, "1 user, new account", baseline_user)
            for size in sizes:
                names = [f"sb{run_id}n{size}u{i}" for i in range(size)]
                everyone += names
                for accounts in ("new", "existing"):  # the same users twice: first login, then again
                    summary = _one(running, f"{size} users, {accounts} accounts", names)
                    storms.append({"users": size, "accounts": accounts, **summary})
        finally:
            run_af(running.state_dir, "down", check=False)
            for name in everyone:
                remove_account(name, UnixAccounts())
    base = baseline["spawn_p50_s"] or 1.0
    for entry in storms:
        for key in ("spawn_p50_s", "spawn_p95_s", "spawn_max_s"):
            entry[f"{key[:-2]}_ratio"] = None if entry[key] is None else round(entry[key] / base, 2)
    return {
        "benchmark": "storm",
        "baseline": baseline,
        "hub_spawn": {"concurrent": concurrent, "defaults": Spawn().__dict__},
        "machine": {"node": platform.node(), "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0))},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server_start": starts,
        "storms": storms,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ready_ax, spawn_ax, api_ax) = plt.subplots(1, 3, figsize=(14, 4.2))
    for accounts, marker in (("new", "o-"), ("existing", "s--")):
        entries = [e for e in report["storms"] if e["accounts"] == accounts]
        users = [e["users"] for e in entries]
        ready_ax.plot(users, [e["ready_fraction"] for e in entries], marker, label=f"{accounts} accounts")
        for key, style in (("spawn_p50_s", "p50"), ("spawn_p95_s", "p95"), ("spawn_max_s", "max")):
            spawn_ax.plot(users, [e[key] for e in entries], marker, label=f"{style}, {accounts}")
        api_ax.plot(users, [e["hub_api_p95_s"] for e in entries], marker, label=f"{accounts} accounts")
    base = report["baseline"]
    spawn_ax.axhline(base["spawn_p50_s"], color="grey", lw=1, label="1 user alone")
    api_ax.axhline(base["hub_api_p95_s"], color="grey", lw=1, label="1 user alone")
    api_ax.axhline(1.0, color="red", lw=1, ls=":", label="target 1 s")
    ready_ax.set(title="servers ready", xlabel="users spawning at once", ylabel="fraction", ylim=(0, 1.05))
    spawn_ax.set(title="spawn form -> server ready", xlabel="users spawning at once", ylabel="seconds")
    api_ax.set(title="hub REST API p95 during the storm", xlabel="users spawning at once", ylabel="seconds")
    for ax in (ready_ax, spawn_ax, api_ax):
        ax.legend(fontsize=7)
    cores = report["machine"]["cpus"]
    fig.suptitle(f"Spawn storms, {cores} cores, hub.spawn.concurrent {report['hub_spawn']['concurrent']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,30,50", help="storm sizes, comma-separated")
    parser.add_argument("--concurrent", type=int, default=Spawn().concurrent, help="hub.spawn.concurrent")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    try:
        sizes = [int(n) for n in args.users.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--users takes whole numbers separated by commas, not {args.users!r}")
    if not sizes or min(sizes) < 1 or args.concurrent < 1:
        parser.error("--users and --concurrent must be at least 1")
    if os.geteuid() != 0:
        parser.error("per-user Unix accounts need root: run as root")
    report = run(sizes, args.concurrent)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storm.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "storm.png")
    print(f"wrote {args.out / 'storm.json'} and {args.out / 'storm.png'}")


if __name__ == "__main__":
    main()
