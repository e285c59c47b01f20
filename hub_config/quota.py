"""The hub refuses a notebook server that would take its user past their quota (facility.quota).

FacilitySpawner awaits this on a form post (the form comes back with the message) and in
pre_spawn_start (a REST request). The user's other servers come from the hub's own spawners (the
hub restores them from its database after a restart), their runs of `af run` from facility.runs,
their clusters from every gateway (facility.ledger), awaited on the hub's event loop: a slow
gateway delays only this spawn. A gateway that does not answer refuses it (facility.ledger says why).
"""

from __future__ import annotations

from typing import Any

from tornado import web

from facility import ledger, runs
from facility.quota import Holding, quota_for, refusal
from facility.runtime import read_runtime
from facility.validation import SpawnRequest


def _refusal(status: int, message: str) -> web.HTTPError:
    """The REST API's error; the same words, without "HTTP 403: ...", in a failed spawn's progress."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]  # read by jupyterhub.utils.format_exception
    return error


def _other_servers(spawner: Any) -> list[Holding]:
    return [
        ledger.server_holding(name, other.user_options or {})
        for name, other in spawner.user.spawners.items()
        if other is not spawner and other.active
    ]


async def refuse_over_quota(spawner: Any, request: SpawnRequest) -> None:
    """Raise the hub's 403 with what the user holds where, if this server does not fit their quota."""
    user = spawner.user
    quota = quota_for(spawner.facility, {g.name for g in user.groups}, bool(user.admin))
    if quota is None:
        return
    runtime = read_runtime()
    gateways = {name: (gw.url, gw.api_token) for name, gw in runtime.gateways.items()}
    try:
        clusters = await ledger.gateway_clusters(gateways, user.name)
        held = _other_servers(spawner) + clusters + runs.running(runs.runs_dir(runtime.state_dir), user.name)
    except ledger.LedgerUnavailable as exc:
        spawner.log.warning("Quota: refused a server of %s, the ledger is unknown: %s", user.name, exc)
        raise _refusal(503, f"Cannot check your quota right now: {exc}. Try again in a minute.") from None
    asked = ledger.server_holding(spawner.name, request.as_options())
    message = refusal(quota, held, asked, f"Starting a notebook server on {request.backend!r}")
    if message:
        spawner.log.info("Quota: refused a server of %s: %s", user.name, message)
        raise _refusal(403, f"Cannot start your server: {message}")
