"""Start a Dask scheduler or worker on a batch node bound to the node's address, not all interfaces.

A batch job learns its node only when it starts, so dask-gateway's jobqueue backends write
`0.0.0.0` (every interface) as the listening host of schedulers, workers and their dashboards.
Jobs run

    python -m backends.common.node_address [--towards SCHEDULER_ADDRESS] -- dask worker ... --host 0.0.0.0

which puts in place of each `0.0.0.0` host the address distributed itself would advertise
(`distributed.utils.get_ip`: the interface that routes towards the scheduler, or outwards for the
scheduler itself), then execs the command. Nothing else about the command changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from distributed.comm import get_address_host
from distributed.utils import get_ip

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (the host this replaces)


def node_address(towards: str = "") -> str:
    """This node's address towards a Dask address (or outwards when none is given)."""
    return get_ip(get_address_host(towards)) if towards else get_ip()


def bound(argv: Sequence[str], address: str) -> list[str]:
    """argv with every all-interfaces host (`0.0.0.0` or `0.0.0.0:PORT`) replaced by `address`."""
    prefix = f"{ALL_INTERFACES}:"
    return [
        address if arg == ALL_INTERFACES else f"{address}:{arg[len(prefix) :]}" if arg.startswith(prefix) else arg
        for arg in argv
    ]


def program(name: str) -> str:
    """The program to exec: next to this Python first (a job's environment need not be on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if "/" not in name and os.access(beside, os.X_OK):
        return beside
    return shutil.which(name) or name


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends.common.node_address", description=__doc__)
    parser.add_argument("--towards", default="", help="the scheduler's address (workers)")
    parser.add_argument("command", nargs="+", help="the Dask command, after --")
    options = parser.parse_args(args)
    command = bound(options.command, node_address(options.towards))
    os.execv(program(command[0]), command)  # noqa: S606 (the gateway's own command, never a shell)


if __name__ == "__main__":
    main()
