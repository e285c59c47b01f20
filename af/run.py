"""`af run NOTEBOOK -p name value ... --backend NAME`: execute a notebook with papermill.

Every run gets a folder (`--run-dir`, default `af-runs/<notebook>-<UTC time>/`) holding the
executed notebook and `run.log` (papermill's log and the cells' output). A failing cell ends the
run with exit status 1, a message naming the cell, and the partial output notebook kept.

Each backend kind has one runner function in RUNNERS; `local` runs the kernel on this host. Batch
kinds register theirs from af.slurm_run and af.htcondor_run (`register_runner`).
"""

from __future__ import annotations

import importlib
import keyword
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

import facility
from af import run_report
from af.runtime import StateDir
from dask_backends.data import data_environment
from facility.model import Backend, Facility

console = Console()
err_console = Console(stderr=True)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class RunFailed(RuntimeError):
    """The notebook ran but a cell failed, or it could not be started; the message says which."""


@dataclass(frozen=True)
class RunRequest:
    notebook: Path
    parameters: dict[str, Any]
    facility: Facility
    backend: Backend
    run_dir: Path
    environment: dict[str, str] = field(default_factory=dict)  # for the kernel: data-lake URLs, backend
    cell_timeout: int | None = None

    @property
    def output(self) -> Path:
        return self.run_dir / self.notebook.name

    @property
    def log(self) -> Path:
        return self.run_dir / "run.log"


Runner = Callable[[RunRequest], None]
RUNNERS: dict[str, Runner] = {}


def register_runner(kind: str, runner: Runner) -> None:
    """Make `af run --backend` handle backends of this kind (facility.yaml `kind`)."""
    RUNNERS[kind] = runner


def run_local(request: RunRequest) -> None:
    """Run the kernel on this host with papermill; raise RunFailed naming the failing cell."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from af.run_log import RunLog

    total_cells = len(nbformat.read(request.notebook, as_version=4).cells) + (1 if request.parameters else 0)
    log_file = open(request.log, "a")  # noqa: SIM115 - closed in finally, after the handler
    # papermill's logger carries every output once (stdout INFO, stderr WARNING) and the cell marks:
    # RunLog writes them to run.log (warnings summarised) and prints each cell's progress.
    handler = RunLog(log_file, total_cells, console)
    papermill_log = logging.getLogger("papermill")
    papermill_log.addHandler(handler)
    papermill_log.setLevel(logging.INFO)
    papermill_log.propagate = False  # not also to the root logger's stderr
    saved = {k: os.environ.get(k) for k in request.environment}
    os.environ.update(request.environment)  # the kernel inherits this process's environment
    # The kernel inherits file descriptor 2 too: its own notices (ipykernel's "running over TCP
    # without encryption") go to run.log instead of the terminal.
    saved_stderr = os.dup(2)
    os.dup2(log_file.fileno(), 2)
    try:
        papermill.execute_notebook(
            str(request.notebook),
            str(request.output),
            parameters=request.parameters,
            cwd=str(request.run_dir),  # files the notebook writes land in the run folder
            log_output=True,
            progress_bar=False,  # RunLog shows the cells
            execution_timeout=request.cell_timeout,
        )
    except PapermillExecutionError as exc:
        # the traceback, for whoever reads the log later
        log_file.write(ANSI_ESCAPE.sub("", "\n".join([f"cell {exc.exec_count} failed:", *exc.traceback])) + "\n")
        raise RunFailed(f"cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}") from None
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        counts = handler.finish()
        if counts["warnings"]:
            console.print(
                f"  {counts['warnings']} library warnings ({counts['distinct']} distinct), summarised in run.log"
            )
        papermill_log.removeHandler(handler)
        handler.close()
        log_file.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


register_runner("local", run_local)


# The batch runners import this module to register themselves, so they are loaded on first use.
BATCH_RUNNER_MODULES = ("af.slurm_run", "af.htcondor_run")


def _load_batch_runners() -> None:
    for module in BATCH_RUNNER_MODULES:
        importlib.import_module(module)


def parse_parameters(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """-p name value pairs; values read as YAML scalars or lists (3 -> int, true -> bool, [a, b] -> list)."""
    parameters = {}
    for name, raw in pairs:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise click.BadParameter(f"{name!r} is not a valid parameter name", param_hint="-p")
        try:
            parameters[name] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            parameters[name] = raw
    return parameters


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Refuse parameters the notebook's `parameters` cell does not declare (typos would pass silently)."""
    import papermill

    try:
        declared = papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # noqa: BLE001 - papermill raises many kinds for unreadable notebooks
        raise RunFailed(f"cannot read {notebook} as a notebook: {exc}") from None
    if not parameters:
        return
    if not declared:
        raise RunFailed(f"{notebook} has no cell tagged `parameters`, so it takes no -p values")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise RunFailed(
            f"{notebook} has no parameter {', '.join(unknown)}; its parameters: {', '.join(sorted(declared))}"
        )


def kernel_environment(fac_file: Path, fac: Facility, backend: Backend, state: StateDir) -> dict[str, str]:
    """Data-lake URLs (the running facility's when it runs this facility.yaml, else the file's) and backend."""
    runtime = state.read_runtime()
    if runtime and Path(runtime["facility_file"]).resolve() != fac_file.resolve():
        runtime = None  # another facility runs in this state folder: its ports are not this one's
    env = {"AF_BACKEND": backend.name, **data_environment(fac, backend, runtime)}
    if runtime:
        env["AF_RUNTIME"] = str(state.runtime_file)
    return env


def default_run_dir(notebook: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("af-runs") / f"{notebook.stem}-{stamp}"


@click.command("run")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE", help="Set a notebook parameter."
)
@click.option("--backend", "backend_name", default=None, help="facility.yaml backend to run on (default: the first).")
@click.option(
    "--facility",
    "facility_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="facility.yaml (default: the running facility's, else $AF_FACILITY or the embedded one).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the output notebook and log (default: af-runs/<notebook>-<time>).",
)
@click.option("--cell-timeout", type=click.IntRange(min=1), default=None, help="Seconds one cell may run.")
@click.pass_obj
def run(
    state: StateDir,
    notebook: Path,
    parameters: tuple[tuple[str, str], ...],
    backend_name: str | None,
    facility_file: Path | None,
    run_dir: Path | None,
    cell_timeout: int | None,
) -> None:
    """Execute NOTEBOOK with papermill on a backend; the output notebook and log go to a run folder."""
    runtime = state.read_runtime()
    source = facility_file or (Path(runtime["facility_file"]) if runtime else facility.default_path())
    try:
        fac = facility.load(source)
    except facility.FacilityError as exc:
        _fail(str(exc), 2)
    try:
        backend = fac.backend(backend_name) if backend_name else fac.backends[0]
    except KeyError as exc:
        _fail(str(exc.args[0]), 2)
    values = parse_parameters(parameters)
    notebook = notebook.resolve()
    _load_batch_runners()
    runner = RUNNERS.get(backend.kind)
    if runner is None:
        available = ", ".join(b.name for b in fac.backends if b.kind in RUNNERS) or "none"
        _fail(
            f"`af run` cannot run notebooks on backend {backend.name!r} (kind {backend.kind}) yet; "
            f"backends it can use: {available}",
            2,
        )
    try:
        check_parameters(notebook, values)
    except RunFailed as exc:
        _fail(str(exc), 2)
    folder = (run_dir or default_run_dir(notebook)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    request = RunRequest(
        notebook=notebook,
        parameters=values,
        facility=fac,
        backend=backend,
        run_dir=folder,
        environment=kernel_environment(source, fac, backend, state),
        cell_timeout=cell_timeout,
    )
    console.print(f"Running {notebook.name} on backend {backend.name} ({backend.kind}); output in {folder}")
    started = time.perf_counter()
    try:
        runner(request)
    except RunFailed as exc:
        kept = f"; partial output notebook: {request.output}" if request.output.exists() else ""
        _fail(f"{notebook.name}: {exc}{kept}; log: {request.log}")
    seconds = time.perf_counter() - started
    written = run_report.write(request.output, backend.name, seconds, values)
    console.print(
        f"[green]Done[/] in {seconds:.0f} s. Output notebook: {request.output}\n"
        f"Figures: {len(written['figures'])} PNG files in {folder / 'figures'}\n"
        f"Report: {written['report']}\nLog: {request.log}"
    )


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)
