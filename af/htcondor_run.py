"""`af run --backend <htcondor backend>`: run a notebook with papermill as an HTCondor job.

Like the Slurm runner (af/batch_run.py): the notebook and its parameters (a JSON file, so no value
passes through a shell or the submit language) go to a job folder on the shared file system
(`site.job_dir`, else `.af-run/` under the current folder); the job runs papermill through
dask_backends.container; a progress display shows the job's HTCondor state and papermill's cell
progress; at the end the executed notebook and the job's log are copied to the run folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import facility
from af.run import RunFailed, RunRequest, register_runner
from dask_backends import htcondor
from dask_backends.container import data_cache_environment, job_argv
from facility.model import Backend

# The job records papermill's exit status itself: HTCondor's own ExitCode is gone from condor_q
# once the job leaves the queue, and condor_history may be disabled at a site.
EXIT_RECORDER = 'status=0; "$@" || status=$?; echo "$status" > exit_code; exit "$status"'
PAPERMILL_PROGRESS = re.compile(r"(\d{1,3})%\|")


def _tool(backend: Backend, name: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    argv = [*htcondor.condor_argv(backend.site, name), *args]
    try:
        return subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise RunFailed(f"{argv[0]} is not installed here: `af run --backend {backend.name}` needs HTCondor") from None


def _job_dir(backend: Backend) -> Path:
    base = (backend.site or {}).get("job_dir")
    root = Path(str(base)) / "af-run" if base else Path.cwd() / ".af-run"
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    ids = htcondor.job_user_ids(backend.site)
    if ids:
        os.chown(path, *ids)  # the job writes its log, exit status and output notebook here
    return path


def submit_description(request: facility.SpawnRequest, argv: list[str], env: dict[str, str], job_dir: Path) -> str:
    """The submit description of one papermill run; every value passes htcondor.submit_value."""
    lines = {
        "universe": "vanilla",
        "executable": "/bin/sh",
        "arguments": htcondor.condor_arguments(["-c", EXIT_RECORDER, "af-run", *argv]),
        "transfer_executable": "false",
        "should_transfer_files": "NO",
        "getenv": htcondor.getenv_names(env),
        "initialdir": str(job_dir),
        "output": str(job_dir / "job.log"),
        "error": str(job_dir / "job.log"),
        "request_cpus": str(request.cores),
        "request_memory": f"{request.memory_gb * 1024}M",
        "+AfRun": htcondor.classad_string(job_dir.name),
    }
    if request.queue:
        lines["accounting_group"] = request.queue
    if request.walltime_hours:
        seconds = request.walltime_hours * 3600
        lines["periodic_remove"] = f"JobStatus == 2 && time() - EnteredCurrentStatus > {seconds}"
    body = "\n".join(f"{key} = {htcondor.submit_value(value)}" for key, value in lines.items())
    return body + "\nqueue\n"


def _state(backend: Backend, job_id: str) -> tuple[int, str]:
    """(JobStatus, HoldReason); status 0 once the job has left the queue."""
    out = _tool(backend, "condor_q", job_id, "-af:j", "JobStatus", "HoldReason").stdout.split(maxsplit=2)
    if len(out) >= 2 and out[1].isdigit():
        return int(out[1]), out[2].strip() if len(out) > 2 else ""
    return 0, ""


def run_htcondor(request: RunRequest) -> None:
    """af.run's runner for HTCondor backends: raise RunFailed when the job does not succeed."""
    fac, backend = request.facility, htcondor.with_default_environment(request.backend)
    console = Console(stderr=True)
    try:
        spawn = facility.validate_spawn(fac, {"backend": backend.name}, set(), is_admin=True)
    except facility.RequestError as exc:
        raise RunFailed(f"cannot run on {backend.name!r}: {exc}") from None
    job_dir = _job_dir(backend)
    shutil.copyfile(request.notebook, job_dir / "input.ipynb")
    (job_dir / "parameters.json").write_text(json.dumps(request.parameters))  # JSON is YAML: papermill -f reads it
    papermill = ["papermill", "input.ipynb", "output.ipynb", "-f", "parameters.json", "--progress-bar"]
    papermill += ["--cwd", str(request.notebook.resolve().parent)]  # relative paths as in a local run
    argv = job_argv(fac, backend, fac.image(spawn.image), papermill)
    env = {
        "HOME": str(job_dir),
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        **data_cache_environment(fac, backend),
        **request.environment,
    }
    try:
        description = submit_description(spawn, argv, env, job_dir)
    except htcondor.SubmitValueError as exc:
        raise RunFailed(f"cannot write the HTCondor job: {exc}") from None
    submitted = _tool(backend, "condor_submit", "-terse", stdin=description, env={**os.environ, **env})
    if submitted.returncode != 0:
        raise RunFailed(f"HTCondor refused the job: {submitted.stderr.strip() or submitted.stdout.strip()}")
    job_id = htcondor.parse_submit_output(submitted.stdout)
    console.print(f"Submitted [bold]{request.notebook.name}[/] as HTCondor job {job_id} on {backend.name} ({job_dir})")
    _wait(backend, job_id, job_dir, console)
    request.run_dir.mkdir(parents=True, exist_ok=True)
    log = (job_dir / "job.log").read_text(errors="replace") if (job_dir / "job.log").exists() else ""
    request.log.write_text(log)
    if (job_dir / "output.ipynb").exists():
        shutil.copyfile(job_dir / "output.ipynb", request.output)
    exit_text = (job_dir / "exit_code").read_text().strip() if (job_dir / "exit_code").exists() else ""
    if exit_text != "0":
        lines = log.splitlines()
        error = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
        code = exit_text or "none: the job was removed before papermill ended"
        raise RunFailed(f"HTCondor job {job_id} failed (exit code {code}): {error.strip()}")


def _wait(backend: Backend, job_id: str, job_dir: Path, console: Console, poll_seconds: float = 1.0) -> None:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of cells"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"job {job_id}: idle", total=100)
        try:
            while True:
                time.sleep(poll_seconds)
                status, hold_reason = _state(backend, job_id)
                if status == 0:
                    return
                if status == 5:
                    _tool(backend, "condor_rm", job_id)
                    raise RunFailed(f"HTCondor put job {job_id} on hold ({hold_reason}); it was removed")
                log = (job_dir / "job.log").read_text(errors="replace") if (job_dir / "job.log").exists() else ""
                done = PAPERMILL_PROGRESS.findall(log)
                name = htcondor.JOB_STATUS.get(status, str(status))
                progress.update(task, description=f"job {job_id}: {name}", completed=int(done[-1]) if done else 0)
        except KeyboardInterrupt:
            _tool(backend, "condor_rm", job_id)
            raise RunFailed(f"interrupted: HTCondor job {job_id} removed") from None


register_runner("htcondor", run_htcondor)
