"""`af usage`: the core-, memory- and GPU-hours the usage sampler recorded (facility.usage), summed
by user, group or backend, as a table and, with --plot, a bar chart (af.usage_plot)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

import facility
from af.runtime import StateDir
from facility.usage import UsageStore, UsageUnavailable, usage_path
from facility.usage_report import BY, Total, checked_day, hours, overall, totals


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return checked_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _png(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is None:
        return None
    if value.suffix.lower() != ".png":
        raise click.BadParameter(f"{value} does not end in .png; the plot is a PNG image")
    if not value.resolve().parent.is_dir():
        raise click.BadParameter(f"the folder {value.resolve().parent} does not exist")
    return value


def usage_table(found: list[Total], everything: Total, by: str) -> Table:
    table = Table()
    table.add_column(by)
    for column in ("core-hours", "memory GB-hours", "GPU-hours"):
        table.add_column(column, justify="right")
    for total in [*found, everything]:
        table.add_row(total.key, hours(total.core_hours), hours(total.memory_gb_hours), hours(total.gpu_hours))
    return table


def _title(by: str, since: str | None, last: float | None, interval: int) -> str:
    when = dt.datetime.fromtimestamp(last, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if last else "never"
    start = f"since {since}" if since else "all recorded"
    return f"Usage by {by}, {start} (last sample {when}, one every {interval} s)"


@click.command()
@click.option("--by", type=click.Choice(BY), default="user", show_default=True, help="Sum per user, group or backend.")
@click.option("--since", metavar="YYYY-MM-DD", callback=_day, help="Only from this day on (UTC days).")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_png,
    help="Also draw the table as a bar chart into this PNG file.",
)
@click.pass_obj
def usage(state: StateDir, by: str, since: str | None, plot: Path | None) -> None:
    """Core-hours, memory GB-hours and GPU-hours used, per user, group or backend.

    Recorded while the facility runs by its usage sampler (hub service af-usage) from what each
    user holds: notebook servers, Dask workers and runs of `af run`. By group, a user counts for
    each of their groups, so the groups may add up to more than the total.
    """
    runtime = state.read_runtime()
    if runtime is None:
        _fail(f"no facility has been started in {state.root}; run `af up` first")
    interval = facility.load(runtime.facility_file).usage.sample_interval_seconds
    store = UsageStore(usage_path(state.root))
    try:
        rows = store.rows(since or "")
        last = store.last_sample()
    except UsageUnavailable as exc:
        _fail(f"{exc}; the facility's usage sampler (af-usage in `af status`) records it every {interval} s")
    if not rows:
        _fail(f"no usage recorded {'since ' + since if since else 'yet'}: nobody held a server, worker or run then")
    found, title = totals(rows, by), _title(by, since, last, interval)
    click.echo(title)
    Console().print(usage_table(found, overall(rows), by))
    if plot:
        from af.usage_plot import write_plot  # matplotlib only for a plot

        write_plot(plot, found, by, title)
        click.echo(f"Plot: {plot}")
