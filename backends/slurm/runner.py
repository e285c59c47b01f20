"""`af run --backend <slurm backend>`: run a notebook with papermill as a Slurm batch job.

The notebook, its parameters (a JSON file, so no value passes through a shell) and the job's
output live in a job folder on the shared file system (`site.job_dir`, else `.af-run/` under the
current folder). The job runs papermill through backends.common.container (apptainer on the
image's CVMFS path, or the configured environment); the script is templates/slurm_run.sh.j2.
While it waits, a progress display shows the job's Slurm state and papermill's cell progress; at
the end the executed notebook and the job's log are copied next to the requested output, and a
failed run exits non-zero.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import facility
from backends.common.batch_run import fetch_results, follow_job, last_error_line, new_job_dir, stage_notebook
from backends.common.gres import gpu_gres
from backends.common.run_request import RunFailed, RunRequest
from backends.slurm.scripts import job_argv, render_run_script
from backends.slurm.settings import SlurmSettings
from facility.data_environment import data_environment
from facility.model import Backend, Facility

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


class BatchRunError(RunFailed):
    """The batch run could not be submitted or did not succeed; the message says why."""


@dataclass(frozen=True)
class BatchRunResult:
    job_id: str
    state: str
    exit_code: int
    output: Path
    log: Path

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code == 0


def _slurm_env(backend: Backend, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), **SlurmSettings.of(backend).slurm_env()}


def _slurm(
    backend: Backend, *argv: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            list(argv),
            input=stdin,
            env=_slurm_env(backend, env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise BatchRunError(
            f"{argv[0]} is not installed here: `af run --backend {backend.name}` needs Slurm's commands"
        ) from None


def batch_script(
    fac: Facility, backend: Backend, request: facility.SpawnRequest, job_dir: Path, papermill_argv: list[str]
) -> str:
    """The sbatch script of one papermill run (scripts.render_run_script)."""
    image = fac.image(request.image)
    return render_run_script(
        {
            "job_name": "af-run",
            "log_file": job_dir / "job.log",
            "workdir": job_dir,
            "nprocs": request.cores,
            "memory": f"{request.memory_gb}G",
            "runtime": f"{request.walltime_hours or 1:02d}:00:00",
            "partition": request.queue,
            "account": SlurmSettings.of(backend).account,
            "gres": gpu_gres(request.gpus, request.gpu_type),
            "site_options": SlurmSettings.of(backend).sbatch_options,
            "command": shlex.join(job_argv(fac, backend, image, papermill_argv, gpus=request.gpus)),
        }
    )


def _job_state(backend: Backend, job_id: str) -> str:
    queued = _slurm(backend, "squeue", "-h", "-j", job_id, "-o", "%T")
    if queued.returncode == 0 and queued.stdout.strip():
        return queued.stdout.split()[0]
    shown = _slurm(backend, "scontrol", "-o", "show", "job", job_id)
    match = re.search(r"JobState=(\S+)", shown.stdout)
    return match.group(1) if match else "GONE"


def submit_notebook(
    fac: Facility,
    backend: Backend,
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    options: dict[str, Any],
    console: Console | None = None,
    poll_seconds: float = 1.0,
    environment: dict[str, str] | None = None,
    log: Path | None = None,
) -> BatchRunResult:
    """Run `notebook` as a Slurm job and wait; the executed notebook ends up at `output`, the
    job's log at `log` (default: next to it). `environment` goes to the job on top of the
    backend's data-cache settings."""
    console = console or Console(stderr=True)
    if backend.kind != "slurm":
        raise BatchRunError(f"backend {backend.name!r} is a {backend.kind} backend, not Slurm")
    if not notebook.is_file():
        raise BatchRunError(f"notebook {notebook} does not exist")
    try:
        request = facility.validate_spawn(fac, {**options, "backend": backend.name}, set(), is_admin=True)
    except facility.RequestError as exc:
        raise BatchRunError(f"cannot run on {backend.name!r}: {exc}") from None
    job_dir = new_job_dir(SlurmSettings.of(backend).job_dir)
    papermill = stage_notebook(job_dir, notebook, parameters)
    script = batch_script(fac, backend, request, job_dir, papermill)
    # sbatch's environment is the job's (--export=ALL): the site's data cache goes with it.
    job_env = {**data_environment(fac, backend), **(environment or {})}
    submitted = _slurm(backend, "sbatch", "--parsable", stdin=script, env=job_env)
    if submitted.returncode != 0:
        raise BatchRunError(f"Slurm refused the job: {submitted.stderr.strip() or submitted.stdout.strip()}")
    job_id = submitted.stdout.strip().splitlines()[-1].split(";")[0]
    console.print(f"Submitted [bold]{notebook.name}[/] as Slurm job {job_id} on {backend.name} ({job_dir})")
    try:
        state = follow_job(
            job_id,
            job_dir,
            lambda: _job_state(backend, job_id),
            console,
            first_state="PENDING",
            final_states=FINISHED | {"GONE"},
            poll_seconds=poll_seconds,
        )
    except KeyboardInterrupt:
        _slurm(backend, "scancel", job_id)
        raise BatchRunError(f"interrupted: Slurm job {job_id} cancelled") from None
    log = log or output.with_suffix(".log")
    _, exit_text = fetch_results(job_dir, output, log)
    exit_code = int(exit_text) if exit_text.isdigit() else -1
    if state == "GONE":
        state = "COMPLETED" if exit_code == 0 else "FAILED"
    return BatchRunResult(job_id, state, exit_code, output, log)


def run_slurm(request: RunRequest) -> None:
    """`af run`'s runner for Slurm backends (backends.registry): raise RunFailed when the job does not succeed."""
    result = submit_notebook(
        request.facility,
        request.backend,
        request.notebook,
        request.output,
        request.parameters,
        {},
        console=Console(stderr=True),
        environment=request.environment,
        log=request.log,
    )
    if not result.ok:
        error = last_error_line(result.log.read_text(errors="replace"))
        raise RunFailed(f"Slurm job {result.job_id} ended {result.state} (exit code {result.exit_code}): {error}")
