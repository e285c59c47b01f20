"""The hub admits `af run` from inside notebook servers: /hub/api/af/runs (issue 20's quota hole).

In a notebook server `af run` runs as the user's own Unix account, which cannot read the
facility's runtime.json (the gateways' tokens: af.host_access), so it cannot read the ledger or
write its run's record itself. It asks here instead, with the server's own token; the hub reads
the ledger (its own spawners, every gateway, the user's other runs: as for a spawn,
hub_config/quota.py) and records the run as the token's user in facility.runs.

- POST /hub/api/af/runs {backend, name, pid, started, host}: 201 {id, lease_seconds, renew_seconds};
  403 with the CLI's own refusal when the run would pass the user's quota; 400 for bad input;
  503 when the ledger is unknown. The record is written before the ledger is read, so two runs
  asked for at once see each other and cannot both pass.
- PUT /hub/api/af/runs/<id>: renew the lease (the client does every renew_seconds); 404 if lapsed.
- DELETE /hub/api/af/runs/<id>: release it (the run ended).

The size counted is the hub's own (the backend's default server size, as the CLI counts it), never
the client's word. The record also ends with the client's process when that process is one the hub
sees on its own host (pid and start time match: the local backend); elsewhere (a batch node, a pod)
the lease ends it within LEASE_SECONDS of the client's last renewal.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from facility import ledger, runs
from facility.loader import current
from facility.model import Facility
from facility.quota import Holding, quota_for, refusal
from facility.runtime import Runtime

ROUTE = r"/api/af/runs"
LEASE_SECONDS = 90
RENEW_SECONDS = 20  # several renewals fit in a lease: one lost request does not end it


def _error(status: int, message: str) -> web.HTTPError:
    """The API's JSON error {"status", "message"} with `message` as given (no "HTTP 400: ...")."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]  # read by APIHandler.write_error
    return error


def client_of(body: Any) -> tuple[str, str, runs.Client]:
    """(backend name, run name, client process) of a request's body; HTTP 400 saying what is wrong."""
    if not isinstance(body, dict):
        raise _error(400, "expected a JSON object with backend, name, pid, started and host")
    backend, name, pid, started, host = (body.get(k) for k in ("backend", "name", "pid", "started", "host"))
    if not isinstance(backend, str) or not backend:
        raise _error(400, "backend: expected the name of a backend of facility.yaml")
    if not isinstance(name, str):
        raise _error(400, "name: expected the run's name (its folder's)")
    try:
        runs.check_run_name(name)
    except ValueError as exc:
        raise _error(400, str(exc)) from None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise _error(400, "pid: expected the run's process id, a positive integer")
    if not isinstance(started, int | float) or isinstance(started, bool):
        raise _error(400, "started: expected the start time of the run's process (seconds since the epoch)")
    if not isinstance(host, str) or len(host) > 255:
        raise _error(400, "host: expected the host name of the run's process")
    return backend, name, runs.Client(pid, float(started), host)


def seen_here(client: runs.Client) -> bool:
    """Whether the client's process is one of this host's (same host name, pid and start time)."""
    started = runs.process_started(client.pid) if client.host == socket.gethostname() else None
    return started is not None and abs(started - client.started) < 1


class RunsHandler(APIHandler):
    """Admit, renew and release a user's runs of `af run`, as the user the token belongs to."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.folder = runs.runs_dir(runtime.state_dir)

    def _user(self) -> Any:
        """The token's user; a token may act on their runs if it may report their activity (a
        server's token may: af run is the user's activity), so never on another user's."""
        user = self.current_user
        if user is None or getattr(user, "kind", None) != "user":
            raise _error(403, "Only a user's own token may run notebooks with af run.")
        if not self.has_scope(f"users:activity!user={user.name}"):
            raise _error(403, "This token may not start runs for you (it lacks users:activity).")
        return user

    async def post(self, run_id: str | None = None) -> None:
        user = self._user()
        if run_id is not None:
            raise _error(405, "POST to /hub/api/af/runs to start a run; PUT or DELETE one of its runs")
        backend_name, name, client = client_of(self.get_json_body())
        fac = current(self.runtime.facility_file)
        try:
            backend = fac.backend(backend_name)
        except KeyError:
            known = ", ".join(b.name for b in fac.backends)
            raise _error(400, f"unknown backend {backend_name!r}; backends: {known}") from None
        run = runs.run_holding(fac, backend, name)
        runs.sweep(self.folder, user.name)
        run_id = runs.record_leased(self.folder, user.name, run, client, seen_here(client), LEASE_SECONDS)
        try:
            await self._refuse_over_quota(user, fac, run, run_id)
        except BaseException:
            runs.release(self.folder, user.name, run_id)
            raise
        self.log.info("af run %s of %s on %s admitted as %s", name, user.name, backend.name, run_id)
        self.set_status(201)
        self.finish(json.dumps({"id": run_id, "lease_seconds": LEASE_SECONDS, "renew_seconds": RENEW_SECONDS}))

    async def _refuse_over_quota(self, user: Any, fac: Facility, run: Holding, run_id: str) -> None:
        """The hub's 403 with the CLI's words if `run` does not fit; 503 if a gateway is silent."""
        quota = quota_for(fac, {g.name for g in user.groups}, bool(user.admin))
        if quota is None:
            return
        servers = [ledger.server_holding(n, s.user_options or {}) for n, s in user.spawners.items() if s.active]
        gateways = {n: (gw.url, gw.api_token) for n, gw in self.runtime.gateways.items()}
        try:
            clusters = await ledger.gateway_clusters(gateways, user.name)
        except ledger.LedgerUnavailable as exc:
            self.log.warning("Quota: refused af run of %s, the ledger is unknown: %s", user.name, exc)
            raise _error(503, f"Cannot check your quota right now: {exc}. Try again in a minute.") from None
        held = servers + clusters + runs.running(self.folder, user.name, but=run_id)
        message = refusal(quota, held, run, f"Starting af run {run.name} on {run.backend!r}")
        if message:
            self.log.info("Quota: refused af run of %s: %s", user.name, message)
            raise _error(403, message)

    async def put(self, run_id: str | None = None) -> None:
        user = self._user()
        if run_id is None or not runs.renew(self.folder, user.name, run_id, LEASE_SECONDS):
            raise _error(404, f"You have no run {run_id!r} under way (it ended, or its lease lapsed).")
        self.finish(json.dumps({"id": run_id, "lease_seconds": LEASE_SECONDS}))

    async def delete(self, run_id: str | None = None) -> None:
        user = self._user()
        if run_id is None or not runs.release(self.folder, user.name, run_id):
            raise _error(404, f"You have no run {run_id!r} under way.")
        self.set_status(204)
        self.finish()


def handlers(runtime: Runtime) -> list[tuple[str, type, dict[str, Any]]]:
    """For c.JupyterHub.extra_handlers (the hub prefixes /hub)."""
    return [(ROUTE, RunsHandler, {"runtime": runtime}), (ROUTE + r"/([^/]+)", RunsHandler, {"runtime": runtime})]
