"""`af run NOTEBOOK -p name value ... --backend NAME`: execute a notebook with papermill.

Every run gets a folder (`--run-dir`, default `af-runs/<notebook>-<UTC time>/`) holding the
executed notebook and `run.log` (papermill's log and the cells' output). A failing cell ends the
run with exit status 1, a message naming the cell, and the partial output notebook kept.

Each backend kind names its runner in backends.registry (`local` runs the kernel on this host,
the batch kinds submit a job).
"""

from __future__ import annotations

import ast
import keyword
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

import facility
from af import run_quota, run_report
from af.runtime import StateDir
from backends.common.run_request import RunFailed, RunRequest
from backends.registry import kind_of
from facility.data_environment import data_environment
from facility.model import Backend, Facility
from facility.runtime import Runtime

MAX_CELL_TIMEOUT = 30 * 24 * 3600  # beyond it the kernel client's timers overflow
console = Console()
err_console = Console(stderr=True)


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


def check_parameters(notebook: Path, parameters: dict[str, Any], raw: dict[str, str] | None = None) -> dict[str, Any]:
    """The parameters checked against the notebook's `parameters` cell, before any kernel starts:
    undeclared names (typos would pass silently) and values of another type than the declared one
    are refused; a declared string takes the text as given (`-p label 5` is "5")."""
    import papermill

    try:
        declared = papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # noqa: BLE001 - papermill raises many kinds for unreadable notebooks
        raise RunFailed(f"cannot read {notebook} as a notebook: {exc}") from None
    if not parameters:
        return parameters
    if not declared:
        raise RunFailed(f"{notebook} has no cell tagged `parameters`, so it takes no -p values")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise RunFailed(
            f"{notebook} has no parameter {', '.join(unknown)}; its parameters: {', '.join(sorted(declared))}"
        )
    checked = dict(parameters)
    for name, value in parameters.items():
        expected = declared_type(declared[name])
        if expected == "str" and not isinstance(value, str) and raw and name in raw:
            checked[name] = raw[name]
        elif expected and not _fits(value, expected):
            default = declared[name].get("default")
            raise RunFailed(
                f"-p {name} {value!r}: the notebook's parameters cell declares {name} as {expected} "
                f"(default {default}); give a value of that type"
            )
    return checked


# The types a -p value (read as YAML) can be checked against; others are not checked.
_CHECKED = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}


def declared_type(parameter: dict[str, Any]) -> str | None:
    """papermill's inferred type of a parameter (its annotation), else the type of its default literal."""
    name = parameter.get("inferred_type_name") or "None"
    if name in _CHECKED:
        return name
    if name != "None":
        return None  # an annotation like Optional[int] or a class: not checked here
    try:
        default = ast.literal_eval(parameter.get("default") or "None")
    except (ValueError, SyntaxError):
        return None  # an expression (os.environ.get(...)): any value may do
    kind = type(default).__name__
    return kind if kind in _CHECKED else None


def _fits(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("int", "float"):
        return False  # YAML's true is no number here
    return isinstance(value, _CHECKED[expected])


def readable_runtime(state: StateDir) -> Runtime | None:
    """The state folder's runtime.json; None also where it is there but not ours to read (a user's
    account in a notebook server, `--state-dir $AF_INSTANCE`: it holds the facility's secrets)."""
    try:
        return state.read_runtime()
    except PermissionError:
        return None


def kernel_environment(fac_file: Path, fac: Facility, backend: Backend, state: StateDir) -> dict[str, str]:
    """Data-lake URLs (the running facility's when it runs this facility.yaml, else the file's) and backend."""
    runtime = readable_runtime(state)
    if runtime and Path(runtime.facility_file).resolve() != fac_file.resolve():
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
@click.option(
    "--cell-timeout",
    type=click.IntRange(min=1, max=MAX_CELL_TIMEOUT),
    default=None,
    help="Seconds one cell may run (at most 30 days).",
)
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
    runtime = readable_runtime(state)
    source = facility_file or (Path(runtime.facility_file) if runtime else facility.default_path())
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
    if not kind_of(backend).runner:
        available = ", ".join(b.name for b in fac.backends if kind_of(b).runner) or "none"
        _fail(
            f"`af run` cannot run notebooks on backend {backend.name!r} (kind {backend.kind}) yet; "
            f"backends it can use: {available}",
            2,
        )
    try:
        values = check_parameters(notebook, values, raw=dict(parameters))
    except RunFailed as exc:
        _fail(str(exc), 2)
    folder = (run_dir or default_run_dir(notebook)).resolve()
    ours = runtime if runtime and Path(runtime.facility_file).resolve() == source.resolve() else None
    try:
        with run_quota.counted_run(ours, fac, backend, folder.name):  # counted in the ledger while under way
            _execute(state, source, fac, backend, notebook, values, folder, cell_timeout)
    except RunFailed as exc:  # the quota's refusal, before anything ran
        _fail(str(exc))


def _execute(
    state: StateDir,
    source: Path,
    fac: Facility,
    backend: Backend,
    notebook: Path,
    values: dict[str, Any],
    folder: Path,
    cell_timeout: int | None,
) -> None:
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
        kind_of(backend).load("runner")(request)
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
