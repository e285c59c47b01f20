"""A real HTCondor personal pool for the tests, run from the Debian 13 chroot that
scripts/test-install.d/30-htcondor.sh builds (HTCondor is not packaged for Debian 12).

The pool's daemons run inside the chroot; the folders jobs need (the project with its venv, the
Python the venv was made from, /tmp with the tests' state, /home with the users' accounts' homes)
are bind-mounted at the same paths, so a job sees the same files as the hub and the gateway.
`stop()` stops the daemons and unmounts everything it mounted.

The daemons are not chroot(2)ed but started in a mount namespace of their own whose root is the
chroot's folder (pivot_root), as an execute node's root is its own: the kernel refuses user
namespaces to a chrooted process (unshare(2), EPERM), so a job in a chroot could not run
bubblewrap (container_runtime: bubblewrap) as its own account. The tools (condor_submit, ...)
still run with chroot(8); they reach the daemons over the network and see the same files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backends.htcondor.commands import condor_argv, job_user_ids

ROOT = Path(__file__).resolve().parent.parent
# The chroot scripts/test-install.d/30-htcondor.sh builds; AF_HTCONDOR_CHROOT names another, as there.
DEFAULT_CHROOT = os.environ.get("AF_HTCONDOR_CHROOT", "/var/lib/analysis-facility/htcondor-trixie")
CONFIG_FILE = "etc/condor/config.d/90-analysis-facility-tests.conf"

# The settings that run jobs in a chroot without cgroups or namespaces (../shared/FACTS.md),
# with short intervals so a job starts within seconds of its submission.
POOL_CONFIG = """\
use ROLE : CentralManager
use ROLE : Submit
use ROLE : Execute
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
USE_SHARED_PORT = False
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_NEGOTIATOR = *
ALLOW_ADMINISTRATOR = *
ALLOW_DAEMON = *
MOUNT_UNDER_SCRATCH =
USE_PID_NAMESPACES = False
USE_CGROUPS = False
# Enough slots for a notebook, a Dask scheduler and workers on a 2-core test machine.
NUM_CPUS = 16
MEMORY = 32768
START = True
SUSPEND = False
PREEMPT = False
KILL = False
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
PERIODIC_EXPR_INTERVAL = 2
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 1
"""


def _python_home() -> Path | None:
    """The Python installation the project's venv was created from (its programs live there)."""
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if not cfg.exists():
        return None
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            home = Path(value.strip())
            return home.parent if home.name == "bin" else home
    return None


def _editable_project() -> Path | None:
    """The project folder the venv's editable install imports from (jobs import the facility from
    there; it is not ROOT when the tests run from another worktree with PYTHONPATH)."""
    import importlib.metadata
    import json

    try:
        text = importlib.metadata.distribution("analysis-facility").read_text("direct_url.json") or "{}"
    except importlib.metadata.PackageNotFoundError:
        return None
    url = json.loads(text).get("url", "")
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


def host_path(chroot: Path, inner: str, max_links: int = 40) -> Path:
    """The host path of `inner` as a process inside `chroot` sees it.

    Links are followed the way the chroot resolves them: an absolute link such as Debian 13's
    /var/lock -> /run/lock points into the chroot, never onto the host's /run/lock (which a plain
    `chroot / "var/lock"` on the host would follow). Missing components are allowed (to create them).
    """
    root = chroot.resolve()
    parts = list(Path("/", inner).parts[1:])
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > max_links:
                raise RuntimeError(f"too many links resolving {inner} inside {chroot}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in Path(target).parts if p != "/"] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def write_inside(chroot: Path, inner: str, text: str) -> None:
    """Write a file of the chroot at its own path (links resolved inside the chroot)."""
    target = host_path(chroot, inner)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


class HTCondorPool:
    """Configure, start and stop a personal pool in a chroot; all mounts are undone by stop()."""

    def __init__(self, chroot: str | os.PathLike[str] = DEFAULT_CHROOT, binds: tuple[Path, ...] = ()):
        self.chroot = Path(chroot)
        self.binds = [ROOT, Path(sys.prefix).resolve(), Path("/tmp"), Path("/home"), *binds]
        for folder in (_python_home(), _editable_project()):
            if folder:
                self.binds.append(folder)
        self.mounted: list[Path] = []
        # Job folders and Dask staging: a folder the job account can enter (pytest's tmp is 0700).
        self.job_dir = Path(tempfile.mkdtemp(prefix="af-htcondor-jobs-"))
        self.job_dir.chmod(0o755)

    job_user = "afjob"
    python = str(Path(sys.prefix) / "bin" / "python")

    @property
    def site(self) -> dict[str, str]:
        """The facility.yaml `site` keys of an htcondor backend that uses this pool."""
        return {"htcondor_chroot": str(self.chroot), "htcondor_job_user": self.job_user}

    def backend_entry(self, name: str = "grid") -> dict[str, Any]:
        """A facility.yaml htcondor backend on this pool, jobs in this Python environment."""
        return {
            "name": name,
            "kind": "htcondor",
            "label": "Test grid site (HTCondor)",
            "description": "HTCondor personal pool started by the tests.",
            "resources": {
                # The pool has 16 CPUs: 32 cores is a request no machine ever matches.
                "cores": {"default": 1, "min": 1, "max": 32},
                "memory_gb": {"default": 1, "min": 1, "max": 8},
                "walltime_hours": {"default": 1, "min": 1, "max": 4},
            },
            "queues": [{"name": "group_physics", "label": "Physics"}, {"name": "group_cms", "label": "CMS"}],
            "dask": {
                "workers": {"default": 0, "min": 0, "max": 4},
                "worker_cores": {"default": 1, "min": 1, "max": 2},
                "worker_memory_gb": {"default": 1, "min": 1, "max": 2},
                "idle_timeout_minutes": 30,
            },
            "data_cache": "local-xcache",
            "container_runtime": "none",
            "site": {
                **self.site,
                "environment": sys.prefix,
                "pending_timeout_seconds": 8,
                "job_dir": str(self.job_dir),
            },
        }

    def unusable_reason(self) -> str | None:
        if os.geteuid() != 0:
            return "the HTCondor test pool runs in a chroot, which needs root"
        if not (self.chroot / ".af-complete").exists():
            return f"no HTCondor chroot at {self.chroot}: run scripts/test-install.d/30-htcondor.sh (make test does)"
        return None

    def tool(self, name: str, *args: str) -> list[str]:
        """A tool's argv as the pool's job account (submissions)."""
        return [*condor_argv(self.site, name), *args]

    def run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a tool as root, the pool's queue super user (queries, and removing or holding anyone's job)."""
        argv = [*condor_argv({"htcondor_chroot": str(self.chroot)}, name), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)

    def _mount(self, *args: str, inner: str) -> None:
        # Mount points resolved inside the chroot: a link there must not put a mount on the host.
        target = host_path(self.chroot, inner)
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True)
        self.mounted.append(target)

    def _let_the_job_account_enter_the_binds(self) -> None:
        """A bound folder may be private on the host (a clone in a 0700 `mktemp -d` folder): the job
        account gets a pass-through ACL on each such bind root (and the host folders above it the
        chroot sees through another bind), and only there. Not
        facility.accounts.grant_traverse, which also opens every host folder above (/root, ...) and
        names a host group, where this account exists only inside the chroot."""
        uid, _ = job_user_ids(self.site)
        roots = sorted({p.resolve() for p in self.binds})
        for bound in roots:
            # The folders above a bind root that the chroot sees as the host's (they lie inside
            # another bind, e.g. a clone in /tmp/tmp.XXXX/repo under the bound /tmp) are on the way too.
            on_the_way = [f for f in bound.parents if any(f.is_relative_to(r) for r in roots)]
            for folder in [bound, *on_the_way]:
                if not folder.stat().st_mode & 0o001:
                    subprocess.run(["setfacl", "--modify", f"u:{uid}:x", str(folder)], check=True)

    def start(self, timeout: float = 60) -> None:
        self.stop()  # a pool left by an interrupted run
        self._mount("-t", "proc", "proc", inner="/proc")
        self._mount("--rbind", "/dev", inner="/dev")
        for path in sorted({p.resolve() for p in self.binds}):
            self._mount("--bind", str(path), inner=str(path))
        write_inside(self.chroot, CONFIG_FILE, POOL_CONFIG)
        write_inside(self.chroot, "/etc/hosts", Path("/etc/hosts").read_text())  # the host's name resolves inside too
        # A fresh queue: jobs of an earlier, interrupted session must not come back.
        for stale in host_path(self.chroot, "/var/spool/condor").glob("job_queue.log*"):
            stale.unlink()
        # The daemons run as the chroot's `condor` user and need their folders (a missing
        # /run/condor makes the master restart condor_procd without end). Made by the chroot's own
        # mkdir, so links such as /var/lock -> /run/lock resolve inside it.
        folders = ["/run/condor", "/var/lock/condor", "/var/log/condor", "/var/spool/condor", "/var/lib/condor/execute"]
        subprocess.run(["chroot", str(self.chroot), "mkdir", "-p", *folders], check=True)
        subprocess.run(["chroot", str(self.chroot), "chown", "-R", "condor:condor", *folders], check=True)
        # Jobs run as an unprivileged account (HTCondor maps root's jobs to nobody it can run);
        # it must reach the venv's Python under the chroot's /root.
        if subprocess.run(["chroot", str(self.chroot), "id", self.job_user], capture_output=True).returncode:
            subprocess.run(
                ["chroot", str(self.chroot), "useradd", "--system", "--no-create-home", self.job_user], check=True
            )
        host_path(self.chroot, "/root").chmod(0o711)
        self._let_the_job_account_enter_the_binds()
        self._start_master()
        try:
            self._wait_until_up(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_master(self) -> None:
        """condor_master in a mount namespace whose root is the chroot (pivot_root; see the module's
        docstring). The namespace copies the mounts made above; condor_master daemonizes, and the
        namespace lives as long as its daemons. Its id is kept to find them when stopping."""
        root = str(self.chroot.resolve())
        enter = (
            'readlink /proc/self/ns/mnt; mount --rbind "$1" "$1" && cd "$1" && mkdir -p .af-old-root'
            " && pivot_root . .af-old-root"
            " && exec chroot . /bin/sh -c 'umount -l /.af-old-root && rmdir /.af-old-root && exec condor_master'"
        )
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", enter, "af-htcondor-pool", root]
        done = subprocess.run(argv, check=True, timeout=30, capture_output=True, text=True)
        self.mount_namespace = done.stdout.split()[0]

    mount_namespace = ""

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slots = self.run("condor_status", "-af", "Name", check=False)
            schedd = self.run("condor_q", "-totals", check=False)
            if slots.returncode == 0 and slots.stdout.strip() and schedd.returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"HTCondor pool in {self.chroot} did not come up in {timeout} s")

    def job_ids(self) -> list[str]:
        """Every job in the queue, whoever submitted it."""
        out = self.run("condor_q", "-allusers", "-af:j", "JobStatus").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def jobs_with(self, attribute: str, value: str) -> list[str]:
        """The jobs whose ClassAd has `attribute` equal to `value` (as condor_q -af prints it), anyone's."""
        out = self.run("condor_q", "-allusers", "-af:j", attribute).stdout
        return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [value]]

    def stop(self) -> None:
        if (self.chroot / "proc" / "self").exists():
            subprocess.run(
                ["chroot", str(self.chroot), "condor_off", "-master", "-fast"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            self._wait_for_daemons_to_exit()
        # Everything mounted under the chroot, deepest first (also mounts left by a killed run).
        prefix = str(self.chroot.resolve()) + "/"
        with open("/proc/mounts") as mounts:
            targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for target in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        self.mounted.clear()

    def remove_job_dir(self) -> None:
        shutil.rmtree(self.job_dir, ignore_errors=True)

    def _wait_for_daemons_to_exit(self, timeout: float = 30) -> None:
        root = str(self.chroot.resolve())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._daemon_pids(root, self.mount_namespace):
                return
            time.sleep(0.5)
        for pid in self._daemon_pids(root, self.mount_namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    @staticmethod
    def _daemon_pids(root: str, namespace: str = "") -> list[int]:
        """Processes chrooted into `root` (an earlier version's daemons, tools) or in the pool's
        mount namespace."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "root") == root or (
                        namespace and os.readlink(entry / "ns" / "mnt") == namespace
                    ):
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids


@contextlib.contextmanager
def benchmark_backend(workdir: Path) -> Iterator[dict[str, Any]]:
    """For benchmarks/startup.py: an htcondor backend entry on a pool started for the run."""
    pool = HTCondorPool()
    reason = pool.unusable_reason()
    if reason:
        pool.remove_job_dir()
        raise RuntimeError(reason)
    pool.start()
    try:
        entry = pool.backend_entry()
        entry["site"]["pending_timeout_seconds"] = 300  # timing runs wait, they do not give up
        yield entry
    finally:
        pool.stop()
        pool.remove_job_dir()
