"""Async calls to a backend's dask-gateway REST API, authenticated with the notebook's JupyterHub token.

The server extension talks to the gateway's REST API directly (not through dask_gateway.Gateway) so
that a refusal keeps the gateway's own HTTP status and message, which the panel shows as they are.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from dask_backends.addresses import dashboard_address, gateway_address

# Running and starting clusters; stopped and failed ones are history, not shown in the panel.
LIVE_STATUSES = "PENDING,RUNNING"


class GatewayError(Exception):
    """A gateway refused a request or could not be reached; status is what the panel answers with."""

    def __init__(self, status: int, backend: str, message: str):
        super().__init__(message)
        self.status = status
        self.backend = backend
        self.message = message


class GatewayAPI:
    """One backend's dask-gateway, as the notebook's user."""

    def __init__(self, backend: str, token: str | None = None):
        try:
            self.backend, self.address = gateway_address(backend)
        except (ValueError, RuntimeError) as exc:
            raise GatewayError(404, backend, str(exc)) from None
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        # Dashboards open through the hub's dashboard service, which adds the owner's key.
        self.dashboard_address = dashboard_address(self.backend) or self.address

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        request = HTTPRequest(
            f"{self.address}{path}",
            method=method,
            headers={"Authorization": f"jupyterhub {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=timeout,
        )
        try:
            reply = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            if exc.response is None:  # timeout: no answer at all
                raise self._unavailable(exc) from None
            raise GatewayError(exc.code, self.backend, self._message(exc.response.body, exc)) from None
        except OSError as exc:  # connection refused, DNS, reset
            raise self._unavailable(exc) from None
        return json.loads(reply.body) if reply.body else None

    def _unavailable(self, exc: Exception) -> GatewayError:
        return GatewayError(
            503,
            self.backend,
            f"the dask-gateway of backend {self.backend!r} at {self.address} does not answer ({exc}); "
            "the facility may be down: ask its operator",
        )

    def _message(self, body: bytes, exc: HTTPClientError) -> str:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode(errors="replace").strip() or str(exc)
        return f"dask-gateway of {self.backend!r}: {message}"

    async def options(self) -> list[dict[str, Any]]:
        return (await self.call("GET", "/api/v1/options"))["cluster_options"]

    async def clusters(self) -> list[dict[str, Any]]:
        reply = await self.call("GET", f"/api/v1/clusters/?status={LIVE_STATUSES}")
        return list(reply.values())

    async def cluster(self, name: str, wait: bool = False) -> dict[str, Any]:
        return await self.call("GET", f"/api/v1/clusters/{name}{'?wait' if wait else ''}", timeout=60)

    async def submit(self, options: dict[str, Any]) -> str:
        return (await self.call("POST", "/api/v1/clusters/", {"cluster_options": options}))["name"]

    async def scale(self, name: str, count: int) -> dict[str, Any]:
        return await self.call("POST", f"/api/v1/clusters/{name}/scale", {"count": count})

    async def adapt(self, name: str, minimum: int, maximum: int) -> dict[str, Any]:
        body = {"minimum": minimum, "maximum": maximum, "active": True}
        return await self.call("POST", f"/api/v1/clusters/{name}/adapt", body)

    async def stop(self, name: str) -> None:
        await self.call("DELETE", f"/api/v1/clusters/{name}")

    async def counts(self, name: str) -> dict[str, Any] | None:
        """The scheduler's own counts (workers, cores, tasks), read from its dashboard as its owner."""
        return await self._dashboard_json(name, "json/counts.json")

    async def plots(self, name: str) -> dict[str, str] | None:
        """The dashboard's individual plots (label -> path), as dask-labextension lists them."""
        return await self._dashboard_json(name, "individual-plots.json")

    async def _dashboard_json(self, name: str, path: str) -> Any:
        request = HTTPRequest(
            f"{self.dashboard_address}/clusters/{name}/{path}",
            headers={"Authorization": f"token {self.token}"},
            follow_redirects=False,
            request_timeout=5,
        )
        try:
            reply = await AsyncHTTPClient().fetch(request)
        except (HTTPClientError, OSError):
            return None  # the dashboard is not up yet; the panel shows "starting"
        return json.loads(reply.body)
