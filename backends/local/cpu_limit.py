"""The CPU limit of a local notebook server (the form's cores, `CPU_LIMIT`), enforced.

- Where the hub may create one (it runs as root), a CPU cgroup per server: cgroup v1 under
  /sys/fs/cgroup/cpu (`cpu.cfs_quota_us` over `cpu.cfs_period_us`), or cgroup v2 where the unified
  hierarchy has the cpu controller (`cpu.max`, the same folder as the memory cgroup). The server and
  everything it starts share `cores` CPUs of time per period; past it the Linux scheduler holds them
  until the next period (throttling), so 1 core means at most one CPU's time however many processes run.
- Otherwise, CPU affinity: the server is pinned to ceil(cores) of the host's CPUs (inherited by its
  kernels). A process may widen its own affinity again, so this only keeps honest work in bounds.

`mechanism()` says which one a host gets; the spawner logs it and the docs describe both.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

from backends.local.memory_limit import CGROUP_ROOT, PARENT, cgroup_name, v2_has

PERIOD_US = 100_000  # the kernel's default CFS period, 100 ms


def _v1() -> Path:
    return CGROUP_ROOT / "cpu"


def mechanism() -> str:
    """'cgroup v1', 'cgroup v2' or 'affinity': how this host limits a local server's CPU."""
    if os.geteuid() == 0 and (_v1() / "cpu.cfs_quota_us").exists():
        return "cgroup v1"
    if os.geteuid() == 0 and v2_has("cpu"):
        return "cgroup v2"
    return "affinity"


def cgroup_path(instance: str, server: str) -> Path | None:
    """The server's CPU cgroup folder (None without one). Under cgroup v2 it is the folder of the
    server's memory cgroup too: one folder holds every controller."""
    kind = mechanism()
    if kind == "affinity":
        return None
    base = _v1() if kind == "cgroup v1" else CGROUP_ROOT
    return base / PARENT / cgroup_name(instance, server)


def quota_us(cores: float) -> int:
    """CPU time per period for `cores` CPUs (1 core: 100 ms every 100 ms)."""
    if cores <= 0:
        raise ValueError(f"a CPU limit must be more than 0 cores, got {cores:g}")
    return max(1000, round(cores * PERIOD_US))  # the kernel refuses quotas under 1 ms


def create(path: Path, cores: float) -> None:
    """Make the cgroup with its quota of `cores` CPUs and a weight of as many processes."""
    path.parent.mkdir(exist_ok=True)
    if path.parent.parent == CGROUP_ROOT:  # v2: the parent must hand the cpu controller down
        (path.parent / "cgroup.subtree_control").write_text("+cpu")
    path.mkdir(exist_ok=True)
    # Its weight too: as one group the server competes with the host's other processes like a single
    # one (1024, v2 100), so a busy host would give a 4-core server one process's share.
    if (path / "cpu.cfs_quota_us").exists():  # v1
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota_us(cores)))
        (path / "cpu.shares").write_text(str(max(2, round(cores * 1024))))
    else:
        (path / "cpu.max").write_text(f"{quota_us(cores)} {PERIOD_US}")
        (path / "cpu.weight").write_text(str(min(10_000, max(1, round(cores * 100)))))


def pinned_cpus(cores: float, server: str, available: set[int]) -> set[int]:
    """ceil(cores) of the available CPUs, starting at one picked by the server's name so that
    servers without cgroups spread over the host rather than all sharing its first CPUs."""
    cpus = sorted(available)
    wanted = min(len(cpus), max(1, math.ceil(cores)))
    start = int(hashlib.sha256(server.encode()).hexdigest(), 16) % len(cpus)
    return {cpus[(start + i) % len(cpus)] for i in range(wanted)}


def preexec(cores: float, path: Path | None, server: str) -> Callable[[], None]:
    """For the forked server, before it drops root: join the CPU cgroup, or without one pin the
    server to its CPUs."""
    procs = str(path / "cgroup.procs") if path is not None else None

    def apply() -> None:
        if procs is not None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        else:
            os.sched_setaffinity(0, pinned_cpus(cores, server, os.sched_getaffinity(0)))

    return apply
