"""A papermill run in a batch job's folder, shared by the Slurm and HTCondor runners of `af run`.

The job folder holds the notebook (`input.ipynb`), its parameters (`parameters.json`), the job's
log (`job.log`, where papermill's progress bar shows up), the executed notebook (`output.ipynb`)
and papermill's exit status (`exit_code`). The runners submit and poll the job their own way;
this module lays out the folder, shows the progress display while waiting, and fetches results.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

PAPERMILL_PROGRESS = re.compile(r"(\d{1,3})%\|")


def read_text(path: Path) -> str:
    """The file's text, or "" when it is missing or unreadable (the job may not have written it)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def new_job_dir(job_dir: str) -> Path:
    """A fresh folder for one run's job, which the nodes must see: under `site.job_dir`/af-run,
    else under ./.af-run.

    A user's own account (per-user mode, `af run` in her notebook server) may not write in
    `site.job_dir`, which the facility's own account made: her run's folder goes under ~/.af-run
    instead, in the home her notebook jobs already start in on the nodes."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if not job_dir:
        return _made(Path.cwd() / ".af-run" / name)
    try:
        return _made(Path(job_dir) / "af-run" / name)
    except PermissionError:
        return _made(Path.home() / ".af-run" / name)


def _made(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def stage_notebook(job_dir: Path, notebook: Path, parameters: dict[str, Any]) -> list[str]:
    """Copy the notebook and its parameters into the job folder; return the job's papermill argv."""
    shutil.copyfile(notebook, job_dir / "input.ipynb")
    (job_dir / "parameters.json").write_text(json.dumps(parameters))  # JSON is YAML: papermill -f reads it
    papermill = ["papermill", "input.ipynb", "output.ipynb", "-f", "parameters.json", "--progress-bar"]
    return [*papermill, "--cwd", str(notebook.resolve().parent)]  # relative paths as in a local run


def follow_job(
    job_id: str,
    job_dir: Path,
    poll: Callable[[], str | None],
    console: Console,
    first_state: str,
    final_states: Collection[str] = (),
    poll_seconds: float = 1.0,
) -> str:
    """Show the job's state and papermill's cell progress until it ends; return its last state.

    `poll` returns the job's state, or None once the job has left the queue; a state in
    `final_states` also ends the wait (after it is shown). `poll` may raise to end the run.
    """
    state = first_state
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of cells"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"job {job_id}: {state}", total=100)
        while state not in final_states:
            time.sleep(poll_seconds)
            polled = poll()
            if polled is None:
                break
            state = polled
            done = PAPERMILL_PROGRESS.findall(read_text(job_dir / "job.log"))
            progress.update(task, description=f"job {job_id}: {state}", completed=int(done[-1]) if done else 0)
    return state


def last_error_line(log: str) -> str:
    """The line of a job's log that names the error (papermill's last "...Error"), else its last line."""
    lines = log.splitlines()
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "").strip()


def fetch_results(job_dir: Path, output: Path, log: Path) -> tuple[str, str]:
    """Copy the job's log to `log` and the executed notebook (if any) to `output`.

    Returns the log's text and papermill's exit status as the job recorded it ("" if it did not).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    text = read_text(job_dir / "job.log")
    log.write_text(text)
    if (job_dir / "output.ipynb").exists():
        shutil.copyfile(job_dir / "output.ipynb", output)
    return text, read_text(job_dir / "exit_code").strip()
