"""Dask dashboards only for their cluster's owner.

distributed's scheduler and worker HTTP servers (dashboard, JSON, Prometheus, bokeh websockets)
answer anyone who reaches their port, and dask-gateway's proxy forwards `/clusters/<name>/` to
the scheduler's without asking who is calling (dask/dask-gateway#570). Every user on the host
shares loopback, so binding to 127.0.0.1 protects nothing.

This module closes that gap in two parts:

- `dashboard_key(secret, username, cluster)` (facility.dashboard_keys): an HMAC of the owner's
  name and the cluster's name under the facility's secret. Only the gateway (which puts it into
  the scheduler's and workers' environment, `DashboardKeyMixin`, put in front of every backend
  class by `with_dashboard_keys` in gateway_config.py) and the hub's dashboard service
  (hub_config/dashboard_service.py, which computes it for the logged-in user) know the secret.
- a preload (`--preload gateway.dashboard_guard`, set in gateway_config.py) for the
  scheduler and the workers: their HTTP server answers 403 to any request, websocket upgrades
  included, that does not carry the key in the `X-AF-Dashboard-Key` header.

The Nanny opens no HTTP server, so scheduler and worker are all there is to guard.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from tornado import httputil, web
from tornado.routing import Router
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from backends.common.mixed_in import mixed_in
from facility.dashboard_keys import ENV_KEY, KEY_HEADER, dashboard_key

logger = logging.getLogger("distributed.af.dashboard_guard")


class _Refused(web.RequestHandler):
    """What a request without the right key gets, whatever its method or path."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("403: this Dask dashboard is only for its cluster's owner, through the facility's hub\n")


class KeyGuard(Router):
    """Routes a request to the server's own application only when it carries the cluster's key.

    Without a key (None) every request is refused.
    """

    def __init__(self, application: Router, key: str | None):
        self.application = application
        self.key = key.encode() if key else None
        self.refused = web.Application([(r".*", _Refused)])

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> httputil.HTTPMessageDelegate | None:
        offered = request.headers.get(KEY_HEADER, "").encode()
        if self.key is not None and hmac.compare_digest(offered, self.key):
            return self.application.find_handler(request, **kwargs)
        return self.refused.find_handler(request, **kwargs)


def guard_http_server(server: Any, key: str | None) -> None:
    """Put KeyGuard in front of a distributed Scheduler's or Worker's HTTP server."""
    http_server = getattr(server, "http_server", None)
    if http_server is None:
        return  # no HTTP server (dashboard disabled): nothing to guard
    callback = http_server.request_callback
    if isinstance(callback, KeyGuard):
        return
    # tornado's HTTPServer reads request_callback for every request, so this takes effect at once.
    http_server.request_callback = KeyGuard(callback, key)


def dask_setup(server: Any) -> None:
    """Preload entry point for `dask scheduler` and `dask worker`."""
    key = os.environ.pop(ENV_KEY, "")  # popped: tasks running on the workers need not see it
    # distributed logs and ignores a preload that raises, which would leave the dashboard open:
    # without a key the guard goes up all the same and refuses everyone.
    guard_http_server(server, key or None)
    if key:
        logger.info("Dashboard requires the cluster's key (%s header)", KEY_HEADER)
    else:
        logger.error("$%s is not set: this dashboard refuses every request", ENV_KEY)


class DashboardKeyMixin(LoggingConfigurable):
    """For dask-gateway backends: give each cluster's scheduler and workers their dashboard key.

    The key goes into their environment after everything else, so a user's own `environment`
    cluster option cannot replace it.
    """

    dashboard_secret = Unicode(
        "", config=True, help="Facility secret the dashboard keys derive from (runtime.json secrets)."
    )

    def _with_dashboard_key(self, env: dict[str, str], cluster: Any) -> dict[str, str]:
        if not self.dashboard_secret:
            raise RuntimeError("DashboardKeyMixin.dashboard_secret is not configured")
        return {**env, ENV_KEY: dashboard_key(self.dashboard_secret, cluster.username, cluster.name)}

    def get_scheduler_env(self, cluster: Any) -> dict[str, str]:
        return self._with_dashboard_key(super().get_scheduler_env(cluster), cluster)

    def get_worker_env(self, cluster: Any) -> dict[str, str]:
        return self._with_dashboard_key(super().get_worker_env(cluster), cluster)


def with_dashboard_keys(backend_class: str | type) -> type:
    """`backend_class` (a dask-gateway backend, or its import path) with DashboardKeyMixin in front.

    One subclass for whatever backend facility.yaml picks (local, per-user local, Slurm,
    HTCondor), under the same name, so `c.<BackendClass>.<trait>` configuration still applies.
    """
    return mixed_in(DashboardKeyMixin, backend_class)
