"""The memory limit of a local notebook server (the form's memory, `MEM_LIMIT`), enforced.

Two mechanisms, both applied where they can be:

- a memory cgroup per server (`cgroup v1` under /sys/fs/cgroup/memory, or `cgroup v2` where the
  unified hierarchy has the memory controller), when the hub may create one (it runs as root):
  the server and everything it starts (kernels, terminals, a LocalCluster) share the limit, and
  the Linux kernel's OOM killer stops the largest process past it;
- `RLIMIT_DATA` on every process of the server, always: a single process that asks for more than
  the limit is refused the memory, which Python raises as MemoryError in the cell that asked.

`mechanism()` says which one a host gets; the spawner logs it and the docs describe both.
"""

from __future__ import annotations

import hashlib
import os
import resource
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "analysis-facility"


def _v1() -> Path:
    return CGROUP_ROOT / "memory"


def v2_has(controller: str) -> bool:
    """Whether this host's cgroup v2 root offers `controller` ("memory", "cpu")."""
    try:
        return controller in (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def mechanism() -> str:
    """'cgroup v1', 'cgroup v2' or 'rlimit': how this host limits a local server's memory."""
    if os.geteuid() == 0 and (_v1() / "memory.limit_in_bytes").exists():
        return "cgroup v1"
    if os.geteuid() == 0 and v2_has("memory"):
        return "cgroup v2"
    return "rlimit"


def cgroup_name(instance: str, server: str) -> str:
    """A server's cgroup folder name: one per facility instance and server, so two facilities on
    one host (tests) never share one."""
    return f"{hashlib.sha256(instance.encode()).hexdigest()[:10]}-{server}"


def cgroup_path(instance: str, server: str) -> Path | None:
    """The server's memory cgroup folder (None without cgroups)."""
    kind = mechanism()
    if kind == "rlimit":
        return None
    base = _v1() if kind == "cgroup v1" else CGROUP_ROOT
    return base / PARENT / cgroup_name(instance, server)


def create(path: Path, limit_bytes: int) -> None:
    """Make the cgroup with its limit (swap included where the host accounts it)."""
    path.parent.mkdir(exist_ok=True)
    if path.parent.parent == CGROUP_ROOT:  # v2: the parent must hand the memory controller down
        (path.parent / "cgroup.subtree_control").write_text("+memory")
    path.mkdir(exist_ok=True)
    # The server's kernels read their cgroup's count of OOM kills (memory_message): both folders
    # may be passed through, not listed (the hub's umask made them root's alone).
    for folder in (path.parent, path):
        folder.chmod(0o711)
    if (path / "memory.limit_in_bytes").exists():  # v1
        (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        swap = path / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit_bytes))
    else:
        (path / "memory.max").write_text(str(limit_bytes))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")


def remove(path: Path) -> bool:
    """Remove a cgroup (memory or CPU) once its processes are gone; False while some still run in it."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def preexec(limit_bytes: int, path: Path | None) -> Callable[[], None]:
    """For the forked server, before it drops root: join the cgroup, set RLIMIT_DATA."""
    procs = str(path / "cgroup.procs") if path is not None else None

    def apply() -> None:
        if procs is not None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return apply
