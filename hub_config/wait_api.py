"""The hub's predicted-wait API for the spawn form: GET /hub/api/af/wait-estimate?backend=...&cores=...

Only a user who may start their own server asks (cookie with the hub's XSRF token, or a token
with the `servers` scope for that user); the form's values are checked as a spawn would check
them (facility.validate_spawn, the user's groups and allowances), then the backend's kind gives
its estimate (backends.registry `wait`). The answer is always JSON with a plain message: a
scheduler that is down or a command that fails is a sentence, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

import facility
from backends.common.wait import Estimate
from backends.registry import kind_of

ROUTE = r"/api/af/wait-estimate"
# Seconds an answer is reused: the form asks on every change, the scheduler need not.
CACHE_SECONDS = 10
# At most this many estimates ask the schedulers at once (a spawn storm opens many forms).
_running = asyncio.Semaphore(4)
_answers: dict[tuple[Any, ...], tuple[float, Estimate]] = {}


class WaitEstimateHandler(APIHandler):
    async def get(self) -> None:
        user = self.current_user
        if user is None or getattr(user, "kind", "") != "user":
            raise web.HTTPError(403, "Log in to see predicted waits.")
        if not self.has_scope(f"servers!user={user.name}"):
            raise web.HTTPError(403, "This token may not start servers, so it may not ask for predicted waits.")
        spawner = user.spawner
        fac = spawner.facility
        options = {key: self.get_argument(key) for key in self.request.arguments if key != "_xsrf"}
        try:
            request = facility.validate_spawn(fac, options, {g.name for g in user.groups}, bool(user.admin))
        except facility.RequestError as exc:
            raise web.HTTPError(400, f"No prediction for these values: {exc}") from None
        backend = fac.backend(request.backend)
        kind = kind_of(backend)
        if not kind.wait:
            self.finish(json.dumps({"backend": backend.name, "state": "none", "summary": "", "details": []}))
            return
        key = (user.name, *request.as_options().values())
        cached = _answers.get(key)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            answer = cached[1]
        else:
            answer = await self._estimate(
                kind.load("wait"), fac, backend, request, user.name, spawner.home_dir_template
            )
            _remember(key, answer)
        self.finish(json.dumps({"backend": backend.name, **answer.as_json()}))

    async def _estimate(self, wait: Any, *args: Any) -> Estimate:
        async with _running:
            try:
                return await wait(*args)
            except Exception:
                self.log.exception("Predicted wait for %s failed", args[1].name)
                return Estimate("unknown", "The predicted wait is not available right now.")


def _remember(key: tuple[Any, ...], answer: Estimate) -> None:
    now = time.monotonic()
    for old in [k for k, (at, _) in _answers.items() if now - at >= CACHE_SECONDS]:
        del _answers[old]
    _answers[key] = (now, answer)


def handlers() -> list[tuple[str, type]]:
    """For c.JupyterHub.extra_handlers (the hub prefixes /hub)."""
    return [(ROUTE, WaitEstimateHandler)]
