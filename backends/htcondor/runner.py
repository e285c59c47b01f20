"""`af run --backend <htcondor backend>`: run a notebook with papermill as an HTCondor job.

Like the Slurm runner (backends/slurm/runner.py): the notebook and its parameters (a JSON file, so
no value passes through a shell or the submit language) go to a job folder on the shared file
system (`site.job_dir`, else `.af-run/` under the current folder); the job runs papermill through
backends.common.container; a progress display shows the job's HTCondor state and papermill's cell
progress; at the end the executed notebook and the job's log are copied to the run folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import facility
from backends.common.batch_run import fetch_results, follow_job, last_error_line, new_job_dir, stage_notebook
from backends.common.container import job_wrapping
from backends.common.run_request import RunFailed, RunRequest
from backends.htcondor.commands import condor_argv, job_user_ids
from backends.htcondor.settings import HTCondorSettings
from backends.htcondor.submit import JOB_STATUS, SubmitValueError, parse_submit_output, run_job_submit
from facility.data_environment import data_environment
from facility.model import Backend


def _tool(backend: Backend, name: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    argv = [*condor_argv(HTCondorSettings.of(backend), name), *args]
    try:
        return subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise RunFailed(f"{argv[0]} is not installed here: `af run --backend {backend.name}` needs HTCondor") from None


def _job_dir(backend: Backend) -> Path:
    site = HTCondorSettings.of(backend)
    path = new_job_dir(site.job_dir)
    ids = job_user_ids(site)
    if ids:
        os.chown(path, *ids)  # the job writes its log, exit status and output notebook here
    return path


def _state(backend: Backend, job_id: str) -> tuple[int, str]:
    """(JobStatus, HoldReason); status 0 once the job has left the queue."""
    out = _tool(backend, "condor_q", job_id, "-af:j", "JobStatus", "HoldReason").stdout.split(maxsplit=2)
    if len(out) >= 2 and out[1].isdigit():
        return int(out[1]), out[2].strip() if len(out) > 2 else ""
    return 0, ""


def run_htcondor(request: RunRequest) -> None:
    """`af run`'s runner for HTCondor backends (backends.registry): raise RunFailed when the job does not succeed."""
    fac, backend = request.facility, request.backend
    site = HTCondorSettings.of(backend)
    console = Console(stderr=True)
    try:
        spawn = facility.validate_spawn(fac, {"backend": backend.name}, set(), is_admin=True)
    except facility.RequestError as exc:
        raise RunFailed(f"cannot run on {backend.name!r}: {exc}") from None
    job_dir = _job_dir(backend)
    papermill = stage_notebook(job_dir, request.notebook, request.parameters)
    wrapping = job_wrapping(fac, backend, fac.image(spawn.image), site, environment=site.job_environment)
    argv = wrapping.apply(papermill)
    env = {
        "HOME": str(job_dir),
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        **data_environment(fac, backend),
        **request.environment,
    }
    try:
        description = run_job_submit(
            argv, env, str(job_dir), spawn.cores, spawn.memory_gb, spawn.queue, spawn.walltime_hours, job_dir.name
        )
    except SubmitValueError as exc:
        raise RunFailed(f"cannot write the HTCondor job: {exc}") from None
    submitted = _tool(backend, "condor_submit", "-terse", stdin=description, env={**os.environ, **env})
    if submitted.returncode != 0:
        raise RunFailed(f"HTCondor refused the job: {submitted.stderr.strip() or submitted.stdout.strip()}")
    job_id = parse_submit_output(submitted.stdout)
    console.print(f"Submitted [bold]{request.notebook.name}[/] as HTCondor job {job_id} on {backend.name} ({job_dir})")
    _wait(backend, job_id, job_dir, console)
    log, exit_text = fetch_results(job_dir, request.output, request.log)
    if exit_text != "0":
        code = exit_text or "none: the job was removed before papermill ended"
        raise RunFailed(f"HTCondor job {job_id} failed (exit code {code}): {last_error_line(log)}")


def _wait(backend: Backend, job_id: str, job_dir: Path, console: Console) -> None:
    def poll() -> str | None:
        status, hold_reason = _state(backend, job_id)
        if status == 0:
            return None
        if status == 5:
            _tool(backend, "condor_rm", job_id)
            raise RunFailed(f"HTCondor put job {job_id} on hold ({hold_reason}); it was removed")
        return JOB_STATUS.get(status, str(status))

    try:
        follow_job(job_id, job_dir, poll, console, first_state="idle")
    except KeyboardInterrupt:
        _tool(backend, "condor_rm", job_id)
        raise RunFailed(f"interrupted: HTCondor job {job_id} removed") from None
