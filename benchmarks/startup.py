"""Start-up times per backend: spawn request -> notebook ready, cluster request -> 2 workers ready.

    .venv/bin/python -m benchmarks.startup --backends local,slurm,htcondor [--accounts shared,per-user]
                                           [--repeats 2] [--out benchmarks/results]

Starts one real facility (`af up`) per account mode (auth.unix_accounts.mode) holding every
backend asked for (batch backends on the test daemons of tests/), measures through the hub's
REST API and the dask-gateway client as a user would, and writes startup.json and startup.png.
Results are keyed "<kind> (<mode>)"; `local (shared)` is the baseline, measured in the same run
on the same machine. Every repeat is a new user, so a per-user spawn includes creating the Unix
account (first login); the accounts are removed again at the end.

A batch backend registers itself in PROVIDERS: a context manager that starts its daemons and
yields the facility.yaml backend entry pointing at them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dask_gateway import Gateway, JupyterHubAuth

from benchmarks.results_io import RESULTS, write_results
from tests.harness import RunningFacility, embedded_raw, free_port_block, run_af, write_facility

# backend kind -> "module:function"; the function takes a work folder and returns a context
# manager yielding the facility.yaml backend entry (and starting / stopping its daemons).
PROVIDERS: dict[str, str] = {
    "slurm": "tests.slurm_cluster:benchmark_backend",
    "htcondor": "tests.htcondor_pool:benchmark_backend",
}


@contextlib.contextmanager
def _local_backend(workdir: Path) -> Iterator[dict[str, Any]]:
    yield copy.deepcopy(embedded_raw()["backends"][0])


def _provider(kind: str) -> Callable[[Path], AbstractContextManager[dict[str, Any]]]:
    if kind == "local":
        return _local_backend
    module, _, name = PROVIDERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def time_spawn(running: RunningFacility, username: str, backend: str, timeout: float = 300) -> float:
    session = running.login(username)
    started = time.monotonic()
    reply = session.api("POST", f"/users/{username}/server", json={"user_options": {"backend": backend}})
    if reply.status_code not in (201, 202):
        raise RuntimeError(f"spawn on {backend} refused: {reply.status_code} {reply.text}")
    session.wait_ready(timeout=timeout)
    elapsed = time.monotonic() - started
    session.stop_server()
    return elapsed


def time_cluster(running: RunningFacility, username: str, backend: str, workers: int = 2) -> float:
    token = running.login(username).token()
    address = running.runtime["gateways"][backend]["url"]
    gateway = Gateway(address=address, auth=JupyterHubAuth(api_token=token))
    started = time.monotonic()
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
    try:
        cluster.scale(workers)
        with cluster.get_client() as client:
            client.wait_for_workers(workers, timeout=300)
            elapsed = time.monotonic() - started
    finally:
        cluster.shutdown()
        gateway.close()
    return elapsed


def start_facility(raw: dict[str, Any], root: Path) -> RunningFacility:
    """`af up` of facility.yaml `raw` in `root` (its state, its yaml) on free ports; `af down` is the caller's."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port_block()
    raw = {**raw, "hub": {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}"}}
    running = RunningFacility(root / "state", write_facility(root / "facility.yaml", raw))
    run_af(running.state_dir, "up", "--facility", str(running.facility_file), "--port", str(port), timeout=300)
    return running


def with_start_timeout(raw: dict[str, Any], seconds: int = 300) -> dict[str, Any]:
    """`raw` whose hub waits `seconds` for a server (batch jobs may queue)."""
    return {**raw, "hub": {**raw.get("hub", {}), "start_timeout_seconds": seconds}}


def run(kinds: list[str], repeats: int, modes: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="af-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        # Test facilities live outside /root and pytest's folders; per-user accounts pass through /tmp.
        root.chmod(0o755)
        raw = copy.deepcopy(embedded_raw())
        raw["backends"] = []
        for kind in kinds:
            entry = stack.enter_context(_provider(kind)(root / kind))
            entry = {**entry, "name": f"bench-{kind}"}
            raw["backends"].append(entry)
        for mode in modes:
            raw["auth"] = {**raw.get("auth", {}), "unix_accounts": {"mode": mode}}
            users = [f"bench{kind}{i}" for kind in kinds for i in range(repeats)]
            running = start_facility(with_start_timeout(raw), root / mode)
            try:
                for kind in kinds:
                    name, key = f"bench-{kind}", f"{kind} ({mode})"
                    spawn = [time_spawn(running, f"bench{kind}{i}", name) for i in range(repeats)]
                    cluster = [time_cluster(running, f"bench{kind}{i}", name) for i in range(repeats)]
                    results[key] = {"spawn_to_ready_s": spawn, "cluster_to_2_workers_s": cluster}
                    print(f"{key}: spawn->ready {spawn} s, cluster->2 workers {cluster} s", flush=True)
            finally:
                run_af(running.state_dir, "down", check=False)
                _remove_accounts(users)
    return {
        "benchmark": "startup",
        "baseline": f"local ({modes[0]})",
        "machine": {"node": platform.node(), "python": platform.python_version(), "cpus": _cpus()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeats": repeats,
        "results": results,
    }


def _remove_accounts(users: list[str]) -> None:
    from facility.accounts import remove_account
    from facility.model import UnixAccounts

    for user in users:
        remove_account(user, UnixAccounts())


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(report["results"])
    metrics = [
        ("spawn_to_ready_s", "spawn request -> notebook ready"),
        ("cluster_to_2_workers_s", "cluster -> 2 workers"),
    ]
    fig, ax = plt.subplots(figsize=(max(7, 1.8 * len(kinds)), 4))
    width = 0.8 / len(metrics)
    for offset, (key, label) in enumerate(metrics):
        means = [sum(report["results"][k][key]) / len(report["results"][k][key]) for k in kinds]
        xs = [i + offset * width for i in range(len(kinds))]
        bars = ax.bar(xs, means, width, label=label)
        ax.bar_label(bars, fmt="%.1f s")
        for x, kind in zip(xs, kinds, strict=True):
            ax.plot([x] * len(report["results"][kind][key]), report["results"][kind][key], "k.", ms=4)
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(kinds))], kinds)
    ax.set_ylabel("seconds")
    ax.set_title(f"Start-up per backend (baseline: {report['baseline']}; {report['machine']['cpus']} cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", default="local,slurm,htcondor", help="backend kinds, comma-separated; local is the baseline"
    )
    parser.add_argument(
        "--accounts",
        default="shared,per-user",
        help="auth.unix_accounts modes, comma-separated; the first is the baseline",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = [k for k in kinds if k != "local" and k not in PROVIDERS]
    if unknown:
        parser.error(f"no benchmark provider for {', '.join(unknown)}; known: local, {', '.join(PROVIDERS)}")
    modes = [m.strip() for m in args.accounts.split(",") if m.strip()]
    if not modes or set(modes) - {"shared", "per-user"}:
        parser.error("--accounts takes shared and/or per-user")
    report = run(kinds, args.repeats, modes)
    write_results("startup", report, plot, args.out)


if __name__ == "__main__":
    main()
