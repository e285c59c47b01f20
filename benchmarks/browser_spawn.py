"""A researcher's spawn as the browser sees it: Start clicked -> JupyterLab's launcher shown.

    .venv/bin/python -m benchmarks.browser_spawn [--repeats 5] [--out benchmarks/results]   (root)

One facility (`af up`, the embedded facility.yaml: local backend, per-user Unix accounts). Each
repeat, in Debian's Chromium through Playwright: a new user logs in, fills the spawn form (1 core,
2 GB) and clicks Start; the clock stops when the hub sends the browser to JupyterLab
(/user/<name>/lab: the server is ready, ~/examples pulled) and when JupyterLab's launcher shows.
Then the same user stops and starts again (an existing account and clone: nbgitpuller merges).
Baseline, in the same run: a new user's spawn through the hub's REST API to "ready", no browser
(benchmarks/startup.py's measurement). Writes browser_spawn.json and browser_spawn.png.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_io import RESULTS, write_results
from benchmarks.startup import start_facility, time_spawn
from tests.browser import chromium_page, log_in
from tests.harness import embedded_raw, run_af

PREFIX = "bspawn"


def _browser_start(page: Any, url: str, user: str) -> tuple[float, float]:
    """Seconds from the Start click until the browser is sent to JupyterLab, and until its launcher shows."""
    page.goto(f"{url}/hub/spawn")
    page.wait_for_selector(".af-spawn-form")
    page.fill("#af-local-cores", "1")
    page.fill("#af-local-memory_gb", "2")
    started = time.monotonic()
    page.click('form button[type="submit"]')
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=300_000)
    at_lab = time.monotonic() - started
    page.wait_for_selector(".jp-Launcher", timeout=300_000)
    return at_lab, time.monotonic() - started


def run(repeats: int) -> dict[str, Any]:
    from facility.accounts import remove_account
    from facility.model import UnixAccounts

    results: dict[str, dict[str, list[float]]] = {
        "new user": {"lab_url_s": [], "launcher_s": []},
        "returning user": {"lab_url_s": [], "launcher_s": []},
        "REST API, new user (baseline)": {"ready_s": []},
    }
    users = [f"{PREFIX}-{kind}{i}" for i in range(repeats) for kind in ("b", "h")]
    for user in users:
        remove_account(user, UnixAccounts())
    with tempfile.TemporaryDirectory(prefix="af-bench-browser-") as tmp:
        Path(tmp).chmod(0o755)  # per-user accounts pass through to the facility's state
        running = start_facility(embedded_raw(), Path(tmp))
        try:
            for i in range(repeats):
                baseline = time_spawn(running, f"{PREFIX}-h{i}", "local")
                results["REST API, new user (baseline)"]["ready_s"].append(round(baseline, 2))
                user = f"{PREFIX}-b{i}"
                with chromium_page(1440, 900) as page:
                    log_in(page, running.url, user, running.password_of(user))
                    for kind in ("new user", "returning user"):
                        at_lab, launcher = _browser_start(page, running.url, user)
                        results[kind]["lab_url_s"].append(round(at_lab, 2))
                        results[kind]["launcher_s"].append(round(launcher, 2))
                        print(f"{user} ({kind}): JupyterLab URL {at_lab:.1f} s, launcher {launcher:.1f} s")
                        running.login(user).stop_server()
        finally:
            run_af(running.state_dir, "down", check=False)
            for user in users:
                remove_account(user, UnixAccounts())
    baseline = statistics.median(results["REST API, new user (baseline)"]["ready_s"])
    ratios = {
        kind: {key: round(statistics.median(values) / baseline, 2) for key, values in times.items()}
        for kind, times in results.items()
    }
    return {
        "benchmark": "browser_spawn",
        "baseline": "REST API, new user: spawn request -> ready (median)",
        "baseline_s": round(baseline, 2),
        "machine": {"node": platform.node(), "python": platform.python_version(), "cpus": len(_cpus())},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeats": repeats,
        "results": results,
        "median_ratio_to_baseline": ratios,
    }


def _cpus() -> set[int]:
    import os

    return os.sched_getaffinity(0)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        ("REST API, new user (baseline)", "ready_s", "REST API\nnew user: ready"),
        ("new user", "lab_url_s", "browser, new user:\nsent to JupyterLab"),
        ("new user", "launcher_s", "browser, new user:\nlauncher shown"),
        ("returning user", "lab_url_s", "browser, returning:\nsent to JupyterLab"),
        ("returning user", "launcher_s", "browser, returning:\nlauncher shown"),
    ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for x, (kind, key, _) in enumerate(bars):
        values = report["results"][kind][key]
        median = statistics.median(values)
        ax.bar(x, median, 0.6, color="tab:gray" if x == 0 else "tab:blue")
        ax.plot([x] * len(values), values, "k.", ms=5)
        ratio = report["median_ratio_to_baseline"][kind][key]
        ax.annotate(f"{median:.1f} s\n({ratio:.2f}x)", (x, median), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(bars)), [label for *_, label in bars], fontsize=8)
    ax.set_ylabel("seconds from Start (median; dots: each repeat)")
    ax.set_ylim(0, max(max(report["results"][k][key]) for k, key, _ in bars) * 1.3)
    machine = f"{report['machine']['cpus']} cores, {report['repeats']} repeats"
    ax.set_title(f"Spawn in the browser vs the REST API ({machine})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    write_results("browser_spawn", run(args.repeats), plot, args.out)


if __name__ == "__main__":
    main()
