"""jupyter-server handlers under /af-dask/: the backends a user may use and their Dask clusters.

    GET    /af-dask/backends                       backends, limits and cluster option fields
    GET    /af-dask/clusters                       live clusters on every backend (+ per-backend errors)
    POST   /af-dask/clusters                       {backend, options, workers | adaptive}
    GET    /af-dask/clusters/<backend>/<name>      one cluster
    GET    /af-dask/clusters/<backend>/<name>/plots  its dashboard's individual plots [{label, url}]
    PATCH  /af-dask/clusters/<backend>/<name>      {workers} or {adaptive: {minimum, maximum}}
    DELETE /af-dask/clusters/<backend>/<name>      stop it
    GET    /af-dask/kernels/<kernel_id>/last-stop  did the memory limit stop it? (kernel_stops.py)

A gateway's refusal is answered with the gateway's status and message ({"message", "backend"})
and the same in plain words for the panel ("plain", af_dask_lab.messages).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

import facility
from af_dask_lab.gateway_api import GatewayAPI, GatewayError
from af_dask_lab.kernel_stops import KernelStops, answer
from af_dask_lab.messages import plain
from backends.common import cluster_names
from dask_backends import catalog

CLUSTER_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
BACKEND_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
KERNEL_ID = r"[A-Za-z0-9-]+"
START_TIMEOUT_S = 120


def _backends() -> list[dict[str, Any]]:
    try:
        return catalog.user_backends(catalog.current_facility())
    except facility.FacilityError as exc:
        raise GatewayError(500, "", f"facility.yaml cannot be read: {exc}") from None
    except RuntimeError as exc:  # $AF_DASK_GATEWAYS missing: not started by the facility's hub
        raise GatewayError(500, "", str(exc)) from None


def _backend(name: str) -> dict[str, Any]:
    backends = {b["name"]: b for b in _backends()}
    if name not in backends:
        known = ", ".join(backends) or "none"
        raise GatewayError(404, name, f"no backend {name!r} you may use; your backends: {known}")
    return backends[name]


def _backend_or_none(name: str) -> dict[str, Any] | None:
    try:
        return _backend(name)
    except GatewayError:
        return None


async def describe_cluster(api: GatewayAPI, report: dict[str, Any]) -> dict[str, Any]:
    """A gateway cluster report plus what the panel shows: readable name, size, idle timeout,
    workers, dashboard, connect code."""
    name = report["name"]
    running = report["status"] == "RUNNING"
    counts = await api.counts(name) if running else None
    route = report.get("dashboard_route")
    options = report.get("options") or {}
    backend = _backend_or_none(api.backend)
    return {
        "backend": api.backend,
        "backend_label": backend["label"] if backend else api.backend,
        "name": name,
        "display_name": cluster_names.display_name(options, name),
        "status": report["status"],
        "options": options,
        "worker_cores": options.get("worker_cores"),
        "worker_memory_gb": options.get("worker_memory_gb"),
        "idle_timeout_minutes": backend["idle_timeout_minutes"] if backend else None,
        # Milliseconds since the epoch, as dask-gateway reports it.
        "start_time": report.get("start_time"),
        "dashboard_link": f"{api.dashboard_address}{route}" if route else None,
        "workers": None if counts is None else counts["workers"],
        "desired_workers": None if counts is None else counts.get("desired_workers"),
        "cores": None if counts is None else counts["cores"],
        "connect_code": catalog.connect_code(api.backend, name),
    }


class AfDaskHandler(APIHandler):
    """JSON in, JSON out; a GatewayError becomes {message, backend} with the gateway's status."""

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise GatewayError(400, "", "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise GatewayError(400, "", "the request body must be a JSON object")
        return data

    def fail(self, exc: GatewayError) -> None:
        self.set_status(exc.status if 400 <= exc.status < 600 else 502)
        try:
            backend = _backend_or_none(exc.backend) if exc.backend else None
        except GatewayError:  # facility.yaml unreadable: the message says so already
            backend = None
        said = plain(exc.message, exc.status, backend)
        self.finish({"message": exc.message, "plain": said, "backend": exc.backend, "status": exc.status})


async def _users_options(backend: dict[str, Any]) -> dict[str, Any]:
    """The gateway's option fields for this user (narrowed to their groups' allowance); facility.yaml's
    backend-wide fields when the gateway does not answer, so the panel still shows the backend."""
    try:
        return {**backend, "options": await GatewayAPI(backend["name"]).options(), "options_source": "gateway"}
    except GatewayError:
        return {**backend, "options_source": "facility.yaml"}


class BackendsHandler(AfDaskHandler):
    @web.authenticated
    async def get(self) -> None:
        try:
            backends = _backends()
        except GatewayError as exc:
            return self.fail(exc)
        self.finish({"backends": list(await asyncio.gather(*(_users_options(b) for b in backends)))})


class ClustersHandler(AfDaskHandler):
    @web.authenticated
    async def get(self) -> None:
        try:
            backends = _backends()
        except GatewayError as exc:
            return self.fail(exc)
        results = await asyncio.gather(*(self._list(b["name"]) for b in backends))
        clusters = [c for found, _ in results for c in found]
        errors = [e for _, e in results if e]
        self.finish({"clusters": clusters, "errors": errors})

    async def _list(self, backend: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        # One gateway that is down must not hide the clusters of the others: report it beside them.
        try:
            api = GatewayAPI(backend)
            reports = await api.clusters()
            return [await describe_cluster(api, r) for r in reports], None
        except GatewayError as exc:
            said = plain(exc.message, exc.status, _backend_or_none(backend))
            return [], {"backend": backend, "status": exc.status, "message": exc.message, "plain": said}

    @web.authenticated
    async def post(self) -> None:
        try:
            request = self.body()
            backend = _backend(str(request.get("backend", "")))
            options = request.get("options") or {}
            if not isinstance(options, dict):
                raise GatewayError(400, backend["name"], "options must be a JSON object")
            adaptive = request.get("adaptive")
            workers = request.get("workers", backend["workers"]["default"])
            try:
                if adaptive:
                    minimum, maximum = self._adaptive_range(backend, adaptive)
                else:
                    catalog.check_workers(backend, workers)
            except ValueError as exc:
                raise GatewayError(400, backend["name"], str(exc)) from None
            api = GatewayAPI(backend["name"])
            name = await api.submit(options)
            report = await self._wait_running(api, name)
            if adaptive:
                await api.adapt(name, minimum, maximum)
            elif workers:
                await api.scale(name, workers)
            self.set_status(201)
            self.finish(await describe_cluster(api, report))
        except GatewayError as exc:
            self.fail(exc)

    @staticmethod
    def _adaptive_range(backend: dict[str, Any], adaptive: Any) -> tuple[int, int]:
        if not isinstance(adaptive, dict):
            raise ValueError("adaptive must be an object {minimum, maximum}")
        minimum = adaptive.get("minimum", backend["workers"]["min"])
        maximum = adaptive.get("maximum", backend["workers"]["max"])
        catalog.check_workers(backend, minimum)
        catalog.check_workers(backend, maximum)
        if minimum > maximum:
            raise ValueError(f"adaptive: minimum {minimum} is above maximum {maximum}")
        return minimum, maximum

    @staticmethod
    async def _wait_running(api: GatewayAPI, name: str) -> dict[str, Any]:
        # The gateway's ?wait long-polls; scaling is only accepted once the scheduler runs.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            report = await api.cluster(name, wait=True)
            if report["status"] == "RUNNING":
                return report
            if report["status"] in ("FAILED", "STOPPED"):
                raise GatewayError(
                    500, api.backend, f"cluster {name} on {api.backend!r} {report['status'].lower()} while starting"
                )
            await asyncio.sleep(0.5)
        raise GatewayError(504, api.backend, f"cluster {name} on {api.backend!r} not running after {START_TIMEOUT_S} s")


class ClusterHandler(AfDaskHandler):
    @web.authenticated
    async def get(self, backend: str, name: str) -> None:
        try:
            api = GatewayAPI(backend)
            self.finish(await describe_cluster(api, await api.cluster(name)))
        except GatewayError as exc:
            self.fail(exc)

    @web.authenticated
    async def patch(self, backend: str, name: str) -> None:
        try:
            request = self.body()
            info = _backend(backend)
            api = GatewayAPI(backend)
            try:
                if "adaptive" in request:
                    minimum, maximum = ClustersHandler._adaptive_range(info, request["adaptive"])
                    reply = await api.adapt(name, minimum, maximum)
                elif "workers" in request:
                    catalog.check_workers(info, request["workers"])
                    reply = await api.scale(name, request["workers"])
                else:
                    raise ValueError("give either workers or adaptive")
            except ValueError as exc:
                raise GatewayError(400, backend, str(exc)) from None
            cluster = await describe_cluster(api, await api.cluster(name))
            # The gateway caps requests above its limit and says so: pass that on as a warning.
            cluster["warning"] = (reply or {}).get("msg")
            self.finish(cluster)
        except GatewayError as exc:
            self.fail(exc)

    @web.authenticated
    async def delete(self, backend: str, name: str) -> None:
        try:
            await GatewayAPI(backend).stop(name)
            self.set_status(204)
            self.finish()
        except GatewayError as exc:
            self.fail(exc)


class PlotsHandler(AfDaskHandler):
    @web.authenticated
    async def get(self, backend: str, name: str) -> None:
        try:
            api = GatewayAPI(backend)
            plots = await api.plots(name)
        except GatewayError as exc:
            return self.fail(exc)
        if plots is None:
            return self.fail(GatewayError(404, backend, f"the dashboard of cluster {name} does not answer"))
        base = f"{api.dashboard_address}/clusters/{name}"
        # As dask-labextension labels them: "Individual Task Stream" -> "Task Stream".
        listed = [
            {"label": label.replace("Individual ", "", 1), "url": f"{base}/{path.lstrip('/')}"}
            for label, path in sorted(plots.items())
        ]
        self.finish({"plots": listed})


class KernelStopHandler(APIHandler):
    def initialize(self, stops: KernelStops) -> None:
        self.stops = stops

    @web.authenticated
    def get(self, kernel_id: str) -> None:
        self.finish(answer(self.stops.last.get(kernel_id)))


def setup_handlers(web_app: Any, stops: KernelStops) -> None:
    base = url_path_join(web_app.settings["base_url"], "af-dask")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "backends"), BackendsHandler),
            (url_path_join(base, "clusters"), ClustersHandler),
            (url_path_join(base, "clusters", f"({BACKEND_NAME})", f"({CLUSTER_NAME})"), ClusterHandler),
            (url_path_join(base, "clusters", f"({BACKEND_NAME})", f"({CLUSTER_NAME})", "plots"), PlotsHandler),
            (url_path_join(base, "kernels", f"({KERNEL_ID})", "last-stop"), KernelStopHandler, {"stops": stops}),
        ],
    )
