"""`af run` counts against its user's quota (facility.quota), as their servers and clusters do.

Before anything is submitted, the run is recorded (facility.runs) and the ledger is read: the
user's servers and groups from the hub, their clusters from every gateway, their other runs. A run
that does not fit is refused with what they hold where; two runs started at once see each other's
record, so they cannot both pass. The record stays while the run is under way, so the hub and the
gateways count it too.

In a notebook server the run's process is the user's own account, which cannot read runtime.json:
there the hub counts the run instead (af.run_admission asks it with the server's token). Without
either (no readable runtime.json, no hub in the environment) no facility runs here, there is
nothing shared to count against, and the run is not checked.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager

from af import run_admission
from backends.common.run_request import RunFailed
from facility import ledger, runs
from facility.hub_services import hub_api_url
from facility.model import Backend, Facility
from facility.quota import Holding, quota_for, refusal
from facility.runtime import Runtime


def run_user() -> str:
    """Whose run this is: the hub's name for them in their notebook server, else the login name."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def _hub_token(runtime: Runtime) -> str:
    """A token that may read users and servers: a gateway's (its ledger role) or the metrics stack's."""
    for gateway in runtime.gateways.values():
        return gateway.api_token
    if runtime.metrics.get("hub_token"):
        return str(runtime.metrics["hub_token"])
    raise ledger.LedgerUnavailable("no token to ask the hub with in this facility's runtime.json")


async def _held(runtime: Runtime, user: str) -> tuple[tuple[str, ...], bool, list[Holding]]:
    hub = await ledger.hub_user(hub_api_url(runtime), _hub_token(runtime), user)
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}
    clusters = await ledger.gateway_clusters(gateways, user)
    others = runs.running(runs.runs_dir(runtime.state_dir), user, but=str(os.getpid()))
    return hub.groups, hub.admin, hub.servers + clusters + others


@contextmanager
def counted_run(runtime: Runtime | None, fac: Facility, backend: Backend, name: str) -> Iterator[None]:
    """Run the block as one of the user's runs (recorded for the ledger and usage accounting);
    RunFailed before it, if the run passes their quota.

    `runtime` is that of the running facility of `fac` (None: none whose runtime.json is readable here)."""
    if runtime is None:
        with _counted_by_the_hub(backend, name):
            yield
        return
    user = run_user()
    run = runs.run_holding(fac, backend, name)
    # Recorded with or without quotas: usage accounting counts runs too (monitoring.usage_sampler).
    with runs.recorded(runs.runs_dir(runtime.state_dir), user, run):
        if fac.quotas.any:
            try:
                groups, admin, held = asyncio.run(_held(runtime, user))
            except ledger.LedgerUnavailable as exc:
                raise RunFailed(f"Cannot check your quota right now: {exc}. Try again in a minute.") from None
            message = refusal(quota_for(fac, groups, admin), held, run, f"Starting af run {name} on {backend.name!r}")
            if message:
                raise RunFailed(message)
        yield


@contextmanager
def _counted_by_the_hub(backend: Backend, name: str) -> Iterator[None]:
    """In a notebook server, the hub admits and counts the run (with its own facility.yaml and
    quotas, whatever --facility says here); elsewhere without a runtime nothing is counted."""
    hub = run_admission.hub_from_environment()
    if hub is None:
        yield
        return
    try:
        runs.check_run_name(name)
    except ValueError as exc:
        raise RunFailed(f"{exc}; give the run a folder with such a name (--run-dir)") from None
    with run_admission.admitted(hub, backend.name, name):
        yield
