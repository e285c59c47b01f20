"""A real single-node Slurm for tests and benchmarks: munged, slurmctld and slurmd on loopback.

Installed by scripts/test-install.d/20-slurm.sh (Debian slurm-wlm + munge). Everything lives in
one folder under /tmp (munged runs as user `munge` and must reach its socket there): slurm.conf,
state, logs. Clients find this Slurm through $SLURM_CONF, which facility.yaml's `site.slurm_conf`
sets for the hub's and the gateway's Slurm commands.

The node declares 16 CPUs, 32 GB and two `gpu:a100` (the file-less GPUs slurmd would drop are
character devices made with mknod in the folder): enough to schedule a notebook, a Dask
scheduler and workers, and GPU requests, on a 2-core machine. Partitions: cpu (default), gpu,
and `down`, which is down so jobs sent there stay pending.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NODE = "afnode"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")


def unavailable_reason() -> str | None:
    """Why this machine cannot run the test Slurm, or None when it can."""
    missing = [p for p in PROGRAMS if not shutil.which(p) and not Path("/usr/sbin", p).exists()]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): run scripts/test-install.d/20-slurm.sh"
    if os.geteuid() != 0:
        return "the test Slurm runs slurmd and munged (as user munge), which needs root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "user munge does not exist: run scripts/test-install.d/20-slurm.sh"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing: run scripts/test-install.d/20-slurm.sh"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """munged + slurmctld + slurmd for one test session; `stop()` ends them and removes the folder."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="af-slurm-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (user munge) reaches its socket folder through it
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.host = socket.gethostname().split(".")[0]
        self._pids: list[Path] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("ctld", "spool", "log", "jobs"):
            (self.root / sub).mkdir(exist_ok=True)
        gpu_files = []
        for i in range(2):
            dev = self.root / f"gpu{i}"
            if not dev.exists():
                try:
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
                except OSError:
                    dev.touch()  # slurmd logs an error but still counts it
            gpu_files.append(str(dev))
        r = self.root
        self.conf.write_text(
            f"""# Test Slurm written by tests/slurm_cluster.py
ClusterName=aftest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_dir / "munge.socket"}
CredType=cred/munge
StateSaveLocation={r / "ctld"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerParameters=sched_interval=1
MinJobAge=60
KillWait=2
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={self.host} CPUs=16 RealMemory=32000 Gres=gpu:a100:2 State=UNKNOWN
PartitionName=cpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={NODE} MaxTime=INFINITE State=UP
PartitionName=down Nodes={NODE} MaxTime=INFINITE State=DOWN
"""
        )
        (self.root / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={NODE} Name=gpu Type=a100 File={gpu_files[0]}\n"
            f"NodeName={NODE} Name=gpu Type=a100 File={gpu_files[1]}\n"
        )

    def start(self, timeout: float = 30) -> SlurmCluster:
        self._write_config()
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir(exist_ok=True)
        os.chown(self.munge_dir, munge.pw_uid, munge.pw_gid)
        subprocess.run(
            [
                "su", "-s", "/bin/sh", "munge", "-c",
                f"{_sbin('munged')} --socket={self.munge_dir}/munge.socket --pid-file={self.munge_dir}/munged.pid "
                f"--log-file={self.munge_dir}/munged.log --seed-file={self.munge_dir}/munged.seed",
            ],
            check=True,
        )  # fmt: skip
        self._pids.append(self.munge_dir / "munged.pid")
        for daemon, extra in (("slurmctld", []), ("slurmd", ["-N", NODE])):
            subprocess.run([_sbin(daemon), "-f", str(self.conf), *extra], check=True, env=self.env)
            self._pids.append(self.root / f"{daemon}.pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.scontrol("show", "node", NODE, check=False)
            if "State=IDLE" in state.stdout:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the test Slurm did not come up in {timeout} s:\n{self.log_tail()}")

    def stop_controller(self) -> None:
        """Stop slurmctld only (tests of a controller that is down); start_controller brings it back."""
        pid = int((self.root / "slurmctld.pid").read_text().strip())
        os.kill(pid, 15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)

    def start_controller(self, timeout: float = 30) -> None:
        subprocess.run([_sbin("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "State=IDLE" in self.scontrol("show", "node", NODE, check=False).stdout:
                return
            time.sleep(0.5)
        raise RuntimeError(f"slurmctld did not come back in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            out.append(f"== {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def scontrol(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("scontrol", *args, check=check)

    def job_ids(self, name: str | None = None) -> list[str]:
        """Jobs that are still queued or running (squeue), optionally by the start of their job name."""
        argv = ["squeue", "-h", "-o", "%i %j %T"]
        rows = [line.split() for line in self.run(*argv).stdout.splitlines() if line.strip()]
        return [row[0] for row in rows if name is None or row[1].startswith(name)]

    def wait_no_jobs(self, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.job_ids()
            if not left:
                return []
            time.sleep(0.5)
        return self.job_ids()

    def backend_entry(self, name: str = "hpc") -> dict[str, Any]:
        """A facility.yaml backend running on this Slurm, jobs in this Python environment."""
        return {
            "name": name,
            "kind": "slurm",
            "label": "Test HPC (Slurm)",
            "description": "Single-node Slurm started by the tests.",
            "resources": {
                "cores": {"default": 1, "min": 1, "max": 4},
                "memory_gb": {"default": 1, "min": 1, "max": 8},
                "gpus": {"default": 0, "min": 0, "max": 2},
                "walltime_hours": {"default": 1, "min": 1, "max": 4},
            },
            "gpu_types": ["a100", "h100"],
            "queues": [
                {"name": "cpu", "label": "CPU nodes"},
                {"name": "gpu", "label": "GPU nodes"},
                {"name": "down", "label": "Closed partition"},
            ],
            "dask": {
                "workers": {"default": 0, "min": 0, "max": 4},
                "worker_cores": {"default": 1, "min": 1, "max": 2},
                "worker_memory_gb": {"default": 1, "min": 1, "max": 2},
                "worker_gpus": {"default": 0, "min": 0, "max": 1},
                "idle_timeout_minutes": 30,
            },
            "data_cache": "local-xcache",
            "container_runtime": "none",
            "site": {
                "slurm_conf": str(self.conf),
                "environment": sys.prefix,
                "pending_timeout_seconds": 8,
                "job_dir": str(self.root / "jobs"),
                "notebook_host": "127.0.0.1",
            },
        }

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--partition=cpu,gpu,down", check=False)  # every job of this Slurm
            self.wait_no_jobs(timeout=15)
        for pid_file in reversed(self._pids):
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), 15)
        time.sleep(1)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def benchmark_backend(workdir: Path) -> Iterator[dict[str, Any]]:
    """For benchmarks/startup.py: a Slurm backend entry on a Slurm started for the run."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    cluster = SlurmCluster().start()
    try:
        yield cluster.backend_entry()
    finally:
        cluster.stop()
