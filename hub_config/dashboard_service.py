"""JupyterHub service `dask-dashboards`: each Dask dashboard for its cluster's owner only.

    <hub>/services/dask-dashboards/<backend>/clusters/<cluster>/<page>

`af up` runs this under its supervisor and the hub knows it as an external service
(hub_config/services.py). A request needs a hub
login (a browser without one is sent through the hub's OAuth login; a notebook server may use its
own API token). The service then forwards the request, websocket upgrades included, to the
backend's dask-gateway proxy route `/clusters/<cluster>/<page>`, adding the dashboard key of
(logged-in user, cluster) (facility.dashboard_keys). Only the owner's key opens the
scheduler, so nobody needs to look up who owns what: for anyone else the scheduler refuses,
and this service answers with a page saying there is no such cluster of theirs.

Configured from its environment: $AF_RUNTIME (the facility's runtime.json: gateway ports and the
dashboard secret) and JupyterHub's $JUPYTERHUB_* variables (facility.hub_services).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
from typing import Any
from urllib.parse import unquote, urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import httpclient, web, websocket
from tornado.ioloop import IOLoop

from facility.dashboard_keys import KEY_HEADER, dashboard_key
from facility.runtime import Runtime, read_runtime
from hub_config.services import DASHBOARD_SERVICE as SERVICE_NAME

# dask-gateway names clusters with hex UUIDs; backend names follow facility.yaml's pattern.
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# Not forwarded in either direction: hop-by-hop headers, the hub's cookies and credentials.
SKIPPED_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "cookie",
    "authorization",
    "content-length",
    "set-cookie",
    KEY_HEADER.lower(),
}

log = logging.getLogger(SERVICE_NAME)


def dashboards_prefix(public_url: str) -> str:
    """Where the service's dashboards start, e.g. http://127.0.0.1:8000/services/dask-dashboards."""
    return f"{public_url.rstrip('/')}/services/{SERVICE_NAME}"


class DashboardUnavailable(web.HTTPError):
    """A refusal shown to the user as a page with `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.message = message


class DashboardProxy(HubOAuthenticated, websocket.WebSocketHandler):
    """Forwards one dashboard request (HTTP or websocket) to the gateway, with the user's key."""

    upstream: websocket.WebSocketClientConnection | None = None

    def initialize(self, gateways: dict[str, str], secret: str) -> None:
        self.gateways = gateways
        self.secret = secret

    # --- where the request goes ---
    def _target(self, backend: str, cluster: str) -> tuple[str, dict[str, str]]:
        if backend not in self.gateways:
            self._refuse(404, f"There is no Dask backend named {backend!r} here.")
        user = self.current_user["name"]
        # Forward the page as the browser wrote it (still percent-encoded: distributed's info
        # pages carry encoded worker addresses), and never let it climb out of the cluster's route.
        root = f"{self._cluster_root(backend, cluster)}/"
        raw_page = self.request.path[len(root) :] if self.request.path.startswith(root) else None
        if raw_page is None or any(part in (".", "..") for part in unquote(raw_page).split("/")):
            self._refuse(404, "There is no such dashboard page.")
        url = f"{self.gateways[backend]}/clusters/{cluster}/{raw_page}"
        if self.request.query:
            url += f"?{self.request.query}"
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in SKIPPED_HEADERS}
        headers[KEY_HEADER] = dashboard_key(self.secret, user, cluster)
        return url, headers

    def _refuse(self, status: int, message: str) -> None:
        raise DashboardUnavailable(status, message)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, DashboardUnavailable) else self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><title>Dask dashboard</title>"
            f"<h1>{status_code}: Dask dashboard not available</h1><p>{html.escape(message)}</p>"
        )

    def _not_yours(self, backend: str, cluster: str) -> None:
        self._refuse(
            404,
            f"You ({self.current_user['name']}) have no running Dask cluster {cluster!r} on backend {backend!r}. "
            "A dashboard is only shown to the user who started its cluster.",
        )

    # --- HTTP ---
    @web.authenticated
    async def get(self, backend: str, cluster: str, page: str) -> None:
        url, headers = self._target(backend, cluster)
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await self._open_websocket(backend, cluster, page, url, headers)
            return
        await self._forward(backend, cluster, url, headers)

    async def _forward(self, backend: str, cluster: str, url: str, headers: dict[str, str]) -> None:
        request = httpclient.HTTPRequest(
            url,
            headers=headers,
            follow_redirects=False,
            decompress_response=False,
            request_timeout=60,
        )
        try:
            reply = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:
            self._refuse(502, f"The dask-gateway of backend {backend!r} does not answer ({exc}).")
        if reply.code == 599:
            self._refuse(502, f"The dask-gateway of backend {backend!r} does not answer ({reply.error}).")
        if reply.code == 403:
            self._not_yours(backend, cluster)
        self.set_status(reply.code, reply.reason)
        seen = set()
        for name, value in reply.headers.get_all():
            if name.lower() in SKIPPED_HEADERS:
                continue
            if name.lower() == "location" and value.startswith("/"):
                # The scheduler redirects within its own root; keep the browser under this service.
                value = f"{self._cluster_root(backend, cluster)}{value}"
            # The scheduler's Content-Type, Date, ... replace tornado's defaults rather than join them.
            (self.add_header if name.lower() in seen else self.set_header)(name, value)
            seen.add(name.lower())
        if reply.body:
            self.write(reply.body)
        await self.finish()

    def _cluster_root(self, backend: str, cluster: str) -> str:
        return f"{self.settings['service_prefix'].rstrip('/')}/{backend}/clusters/{cluster}"

    # --- websockets (bokeh's live plots) ---
    async def _open_websocket(self, backend: str, cluster: str, page: str, url: str, headers: dict[str, str]) -> None:
        # Connect to the scheduler first: a refusal becomes a plain HTTP answer, not an
        # accepted websocket that closes at once.
        # tornado's client makes its own handshake headers.
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket-")}
        protocols = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        request = httpclient.HTTPRequest(url.replace("http", "ws", 1), headers=headers, request_timeout=30)
        try:
            # Without a callback the scheduler's messages wait in the connection until open() relays them.
            self.upstream = await websocket.websocket_connect(request, subprotocols=protocols or None)
        except httpclient.HTTPClientError as exc:
            if exc.code == 403:
                self._not_yours(backend, cluster)
            self._refuse(exc.code if exc.code != 599 else 502, f"The dashboard refused the connection ({exc}).")
        except OSError as exc:
            self._refuse(502, f"The dask-gateway of backend {backend!r} does not answer ({exc}).")
        await websocket.WebSocketHandler.get(self, backend, cluster, page)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.upstream.selected_subprotocol if self.upstream else None

    def open(self, *args: str) -> None:
        IOLoop.current().spawn_callback(self._relay_from_upstream)

    async def _relay_from_upstream(self) -> None:
        while self.upstream is not None:
            message = await self.upstream.read_message()
            if message is None:  # the scheduler closed it
                break
            # The browser may have left meanwhile; on_close then closes the scheduler's side.
            with contextlib.suppress(websocket.WebSocketClosedError):
                await self.write_message(message, binary=isinstance(message, bytes))
        if self.ws_connection is not None:
            self.close()

    async def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


def make_app(runtime: Runtime, prefix: str) -> web.Application:
    gateways = {name: gw.url.rstrip("/") for name, gw in runtime.gateways.items()}
    prefix = prefix.rstrip("/")
    return web.Application(
        [
            (rf"{prefix}/oauth_callback", HubOAuthCallbackHandler),
            (
                rf"{prefix}/({NAME})/clusters/({NAME})/(.*)",
                DashboardProxy,
                {"gateways": gateways, "secret": runtime.secrets.dashboard_secret},
            ),
        ],
        cookie_secret=os.urandom(32),
        service_prefix=prefix,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runtime = read_runtime()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    bind = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = make_app(runtime, prefix)
    app.listen(bind.port, address=bind.hostname)
    log.info("Dask dashboards served at %s for %s", prefix, ", ".join(runtime.gateways) or "no backend")
    IOLoop.current().start()


if __name__ == "__main__":
    main()
