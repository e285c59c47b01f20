"""`af`: start, stop and inspect the analysis facility, and run notebooks on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import facility
import monitoring
from af import host_access, hub_content, rucio_server, sessions, supervise, xrootd
from af.components import Component, MissingDependency, components
from af.data import data as data_commands
from af.data import register_in_rucio, seed_empty_lake
from af.event_archive import archive as _archive  # noqa: F401 - registers `af event archive`
from af.events import event as event_commands
from af.run import run as run_command
from af.runtime import StateDir, plan_runtime, previous_runtime, write_runtime
from af.usage import usage as usage_command
from af.users import prepare_logins
from af.users import user as user_commands
from af.users_table import users_table
from facility.accounts import AccountError
from facility.examples import ExamplesError
from facility.home_folders import HomeFolderError
from facility.runtime import Runtime, default_state_dir

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


@click.group()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=(
        "Where the running facility keeps its files (default: $AF_STATE_DIR, else /var/lib/analysis-facility/state "
        "for root, ~/.local/state/analysis-facility for others)."
    ),
)
@click.pass_context
def main(ctx: click.Context, state_dir: Path | None) -> None:
    """Run the analysis facility: JupyterHub, dask-gateway and the data cache, from one facility.yaml."""
    ctx.obj = StateDir((state_dir or default_state_dir()).resolve())


def _load_facility(path: Path | None) -> tuple[facility.Facility, Path]:
    source = (path or facility.default_path()).resolve()
    try:
        return facility.load(source), source
    except facility.FacilityError as exc:
        _fail(str(exc), 2)
        raise  # unreachable; keeps type checkers content


def _wait_until_up(parts: list[Component], state: StateDir, timeout: float) -> list[str]:
    """Wait for every component, showing progress; return the names that did not come up."""
    pending = {p.name: p for p in parts}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        tasks = {name: bar.add_task(f"starting {name}", total=1) for name in pending}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            states = supervise.process_states(state)
            for name, part in list(pending.items()):
                if supervise.is_up(part, states):
                    bar.update(
                        tasks[name],
                        completed=1,
                        description=f"[green]{name} up[/]" + (f" (port {part.port})" if part.port else ""),
                    )
                    del pending[name]
                elif states.get(name, {}).get("statename") == "FATAL":
                    # supervisord gave up restarting it: no point waiting for the timeout.
                    bar.update(tasks[name], description=f"[red]{name} failed[/], see {state.log(name)}")
                    return list(pending)
                elif states.get(name, {}).get("statename") in ("BACKOFF", "EXITED"):
                    bar.update(tasks[name], description=f"[red]{name} restarting[/], see {state.log(name)}")
            time.sleep(0.5)
    return list(pending)


@main.command()
@click.option(
    "--facility",
    "facility_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="facility.yaml to run (default: $AF_FACILITY or the embedded one).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Public port (default: the port of hub.bind_url)."
)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for start-up.")
@click.option(
    "--sample-data/--no-sample-data",
    default=True,
    show_default=True,
    help="Write the default generated samples into the facility's own data lake when it is empty.",
)
@click.pass_obj
def up(state: StateDir, facility_file: Path | None, port: int | None, timeout: float, sample_data: bool) -> None:
    """Start the facility on loopback and print its URL and how to log in."""
    fac, source = _load_facility(facility_file)
    try:
        host_access.check_can_run(fac)
    except AccountError as exc:
        _fail(str(exc), 2)
    if supervise.supervisord_pid(state) is not None:
        console.print(f"The facility in {state.root} is already running; not starting a second copy.")
        _print_status(state)
        return
    if fac.auth.type == "oidc" and fac.auth.oidc and not os.environ.get(fac.auth.oidc.client_secret_env):
        name = fac.auth.oidc.client_secret_env
        _fail(f"${name} is not set: export the OIDC client secret (auth.oidc.client_secret_env) first", 2)
    runtime = plan_runtime(fac, source, state, port, previous=previous_runtime(state))
    try:
        parts = components(runtime)
    except MissingDependency as exc:
        _fail(str(exc))
    highest = max(p.port or 0 for p in parts)
    if highest > 65535:  # the gateways, dashboards and metrics take the ports above the public one
        _fail(f"the facility needs ports {runtime.ports.public} to {highest}; choose a public port below that", 2)
    taken = [(p, who) for p in parts if p.port and (who := supervise.who_listens(p.port))]
    # Ports the gateways bind themselves (their APIs).
    own_ports = [gw.api_port for gw in runtime.gateways.values()]
    taken += [(None, f"port {port}") for port in own_ports if supervise.port_open(port, 0.3)]
    if taken:
        lines = [f"port {p.port} for {p.name} is taken by {who}" if p else f"{who} is taken" for p, who in taken]
        _fail("cannot start: " + "; ".join(lines) + ". Stop that process or choose another port with --port.")
    write_runtime(state, runtime)
    runtime.stopping_file.unlink(missing_ok=True)  # a plain restart of a gateway keeps its clusters again
    try:
        xrootd.write_configs(runtime)
    except xrootd.XRootDSetupError as exc:
        _fail(str(exc))
    try:
        rucio_server.prepare(runtime)  # data.rucio: its rucio.cfg, and its database the first time
    except rucio_server.RucioSetupError as exc:
        _fail(str(exc))
    origin = runtime.data.get("origin", {})
    if origin.get("managed"):
        extras = xrootd.origin_root_extras(Path(origin["local_root"]), runtime.data["prefixes"])
        if extras:
            console.print(
                f"[yellow]Warning:[/] {origin['local_root']} holds {', '.join(extras)} beside the exported "
                "prefixes; every data-lake reader can list those names. Move them elsewhere."
            )
    try:
        hub_content.publish_examples(runtime.state_path)  # every user's server pulls them into ~/examples
    except ExamplesError as exc:
        _fail(str(exc))
    hub_content.render_user_guide(runtime.state_path)
    if runtime.metrics:
        monitoring.prepare(runtime, fac.name)  # Prometheus's files; the XCaches' g-stream directive
    try:
        granted = host_access.prepare_host(fac, runtime, source)  # per-user accounts: pass-through grants
    except HomeFolderError as exc:
        _fail(str(exc), 2)
    if granted:
        group = fac.auth.unix_accounts.group
        console.print(f"Group {group} may pass through (ACL, no listing): " + ", ".join(map(str, granted)))
    try:
        supervise.start_supervisord(state, parts)
    except subprocess.CalledProcessError:
        _fail(f"supervisord did not start; see {state.log('supervisord')} and {state.supervisor_conf}")
    missing = _wait_until_up(parts, state, timeout)
    if missing:
        logs = ", ".join(str(state.log(n)) for n in missing)
        _fail(f"{', '.join(missing)} did not start within {timeout:.0f} s; see {logs}. `af down` cleans up.")
    if rucio_server.settings_of(runtime):
        _register_origin(runtime)
    if sample_data:
        seed_empty_lake(runtime)
    if rucio_server.settings_of(runtime) and origin.get("managed"):
        register_in_rucio(runtime, Path(origin["local_root"]))  # what the lake held before data.rucio, too
    console.print(f"\n[bold]{fac.title}[/] is up at [link]{runtime.public_url}[/link]")
    for line in prepare_logins(fac, runtime):
        console.print(line, markup=False)
    console.print("`af status` shows each component; `af down` stops them all.")


def _register_origin(runtime: Runtime) -> None:
    from rucio.common.exception import RucioException

    from dask_backends.rucio_dids import RucioLookupError

    try:
        rucio_server.register_origin(runtime)
    except (RucioLookupError, RucioException) as exc:
        rse = runtime.data["rucio"]["rse"]
        _fail(f"the Rucio server answers, but registering the origin as RSE {rse} failed: {exc}")


@main.command()
@click.option(
    "--sessions",
    "sessions_choice",
    type=click.Choice(["stop", "keep"]),
    default=None,
    help="Stop or keep the users' notebook servers and Dask clusters; default: facility.yaml's hub.on_down.",
)
@click.pass_obj
def down(state: StateDir, sessions_choice: str | None) -> None:
    """Stop every process of the facility; notebook servers and Dask clusters as hub.on_down says."""
    was_running = supervise.supervisord_pid(state) is not None
    runtime = previous_runtime(state)
    keep = (sessions_choice or _on_down(runtime)) == "keep"
    servers = 0
    if was_running and runtime and not keep:
        try:
            servers = sessions.stop_servers(runtime)
        except sessions.HubUnreachable as exc:
            console.print(f"[yellow]The hub did not stop the notebook servers[/] ({exc}); ending their processes.")
        runtime.stopping_file.touch()  # the gateways stop their clusters at shutdown (gateway.keep_clusters)
    swept = supervise.stop_all(state, keep_sessions=keep)
    xrootd.remove_admin_dir(runtime)
    if was_running or swept:
        done = [f"{servers} notebook servers stopped"] if servers else []
        done += [f"{swept} leftover processes ended"] if swept else []
        done += ["notebook servers and Dask clusters keep running (hub.on_down: keep)"] if keep else []
        console.print(f"Stopped the facility in {state.root}" + (f" ({', '.join(done)})" if done else ""))
    else:
        console.print(f"Nothing was running for {state.root}")


def _on_down(runtime: Runtime | None) -> str:
    """hub.on_down of the facility.yaml the running facility was started from; `stop` if unreadable."""
    if runtime is None:
        return "stop"
    try:
        return facility.load(runtime.facility_file).hub.on_down
    except facility.FacilityError as exc:
        console.print(f"[yellow]{exc}[/]; stopping notebook servers and Dask clusters.")
        return "stop"


def _print_status(state: StateDir) -> bool:
    runtime = state.read_runtime()
    if runtime is None:
        console.print(f"No facility has been started in {state.root}; run `af up`.")
        return False
    states = supervise.process_states(state)
    table = Table(title=f"Facility in {state.root} ({runtime.public_url})")
    for column in ("component", "state", "port", "process"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    all_up = True
    for part in components(runtime):
        info = states.get(part.name, {})
        up_now = supervise.is_up(part, states)
        all_up &= up_now
        label = "[green]up[/]" if up_now else "[red]down[/]"
        table.add_row(
            part.name,
            label,
            str(part.port or "-"),
            info.get("statename", "not running").lower(),
            str(state.log(part.name)),
        )
    console.print(table)
    console.print(users_table(runtime))  # who holds what
    return all_up


@main.command()
@click.pass_obj
def status(state: StateDir) -> None:
    """Show each component: up or down, its port and its log file. Exits 1 if any is down."""
    sys.exit(0 if _print_status(state) else 1)


@main.command("check-facility")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_facility(path: Path) -> None:
    """Validate a facility.yaml and summarise it."""
    fac, source = _load_facility(path)
    console.print(f"{source}: valid. {len(fac.backends)} backends, {len(fac.images)} images, auth {fac.auth.type}.")
    for backend in fac.backends:
        groups = ", ".join(backend.allowed_groups) or "everyone"
        console.print(f"  {backend.name:<14} {backend.kind:<11} {backend.label} (for {groups})")


main.add_command(data_commands)
main.add_command(event_commands)
main.add_command(run_command)
main.add_command(usage_command)
main.add_command(user_commands)


if __name__ == "__main__":
    main()
