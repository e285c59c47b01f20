"""Smoke tests of the environments the install scripts build outside the repository.

    .venv/bin/python -m tests.smoke htcondor CHROOT   # a pool in CHROOT runs a job as a non-root account
    .venv/bin/python -m tests.smoke slurm             # the test Slurm runs a job as a non-root account

Run by scripts/test-install.d before a new environment replaces the old one: what the tests need
from it must work, not merely be installed. Exits 1 with the reason when it does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# HTCondor jobs of the tests run the venv's Python, bind-mounted into the chroot: so does the smoke job.
PYTHON_JOB = "import os; print(os.getuid())"


def _wait_for(path: Path, what: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.5)
    raise RuntimeError(f"{what} wrote nothing to {path} in {timeout:.0f} s")


def _check_output(output: str, what: str) -> None:
    if not output.isdigit() or output == "0":
        raise RuntimeError(f"{what} should print the non-root uid it ran as; it printed: {output[-2000:]}")


def htcondor(chroot: str) -> None:
    """A pool in `chroot` runs the venv's Python as the pool's job account (what the tests need)."""
    from backends.htcondor.commands import job_user_ids
    from tests.htcondor_pool import HTCondorPool

    pool = HTCondorPool(chroot)
    reason = pool.unusable_reason()
    if reason:
        raise RuntimeError(reason)
    pool.start()
    try:
        folder = pool.job_dir / "smoke"
        folder.mkdir()
        os.chown(folder, *job_user_ids(pool.site))  # the job account writes its output here
        out = folder / "smoke.out"
        description = "\n".join(
            [
                f"executable = {pool.python}",
                f"arguments = \"-c '{PYTHON_JOB}'\"",
                "transfer_executable = false",
                "should_transfer_files = NO",
                f"output = {out}",
                f"error = {out}.err",
                "queue",
            ]
        )
        subprocess.run(pool.tool("condor_submit"), input=description, text=True, check=True, timeout=60)
        try:
            _check_output(_wait_for(out, "the HTCondor smoke job", timeout=90), "the HTCondor smoke job")
        except RuntimeError as exc:
            errors = Path(f"{out}.err").read_text()[-2000:] if Path(f"{out}.err").exists() else ""
            why = pool.run("condor_q", "-allusers", "-better-analyze", check=False).stdout[-3000:]
            raise RuntimeError(f"{exc}\njob's stderr: {errors}\ncondor_q -better-analyze:\n{why}") from exc
    finally:
        pool.stop()
        pool.remove_job_dir()


def slurm() -> None:
    """The test Slurm (munge key, daemons) runs a job as `nobody`.

    (The venv is not reachable for `nobody`: the tests' facilities grant their accounts access.)
    """
    import tempfile

    from tests.slurm_cluster import SlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    cluster = SlurmCluster().start()
    folder = Path(tempfile.mkdtemp(prefix="af-slurm-smoke-"))
    folder.chmod(0o777)
    out = folder / "smoke.out"
    try:
        cluster.run(
            "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
            "sbatch", f"--output={out}", "--chdir=/tmp", "--wrap=id -u",
        )  # fmt: skip
        _check_output(_wait_for(out, "the Slurm smoke job", timeout=60), "the Slurm smoke job")
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["htcondor"] and len(argv) == 2:
            htcondor(argv[1])
        elif argv == ["slurm"]:
            slurm()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed: {' '.join(argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
