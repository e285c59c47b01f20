"""JupyterHub service `af-operator`: the facility's metrics as plots in the hub, for admins.

    <hub>/services/af-operator/            last hour;  ?hours=6 for more

For sites that run no Grafana: the same queries as the Grafana dashboard (monitoring.panels), asked
of the facility's Prometheus (query_range) and drawn as inline SVG, plus the alerts firing now. A
hub login is needed (OAuth through the hub) and only admins are let in: the page shows the whole
facility's load. `af up` runs this under its supervisor when metrics are enabled (monitoring.hub).
"""

from __future__ import annotations

import html
import logging
import math
import os
import time
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import httpclient, web
from tornado.escape import json_decode, url_escape
from tornado.ioloop import IOLoop

from facility.runtime import Runtime, read_runtime
from monitoring.panels import PANELS, Panel

SERVICE_NAME = "af-operator"  # monitoring.hub.OPERATOR_SERVICE
WIDTH, HEIGHT, POINTS = 420, 140, 120
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")

log = logging.getLogger(SERVICE_NAME)


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    while "{{" in text and "}}" in text:  # labels the series does not carry
        start = text.index("{{")
        text = text[:start] + text[text.index("}}", start) + 2 :]
    return " ".join(text.split()) or "value"


def svg_plot(series: list[tuple[str, list[tuple[float, float]]]], start: float, end: float) -> str:
    """Lines of each (name, [(time, value)]) series on one shared scale, with a legend of last values."""
    values = [v for _, points in series for _, v in points]
    top = max([*values, 1e-9])
    bottom = min([*values, 0.0])
    span = (top - bottom) or 1.0
    lines = []
    legend = []
    for index, (name, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        coords = " ".join(
            f"{(t - start) / (end - start) * WIDTH:.1f},{HEIGHT - (v - bottom) / span * HEIGHT:.1f}" for t, v in points
        )
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        last = points[-1][1] if points else float("nan")
        legend.append(f'<li><span style="color:{colour}">&#9632;</span> {html.escape(name)}: {last:.4g}</li>')
    return (
        f'<svg class="plot" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img"><rect width="{WIDTH}" height="{HEIGHT}" fill="#fafafa" stroke="#ddd"/>'
        f"{''.join(lines)}</svg>"
        f'<div class="scale">max {top:.4g}</div><ul class="legend">{"".join(legend) or "<li>no data</li>"}</ul>'
    )


class OperatorPage(HubOAuthenticated, web.RequestHandler):
    def initialize(self, prometheus: str, step: int) -> None:
        self.prometheus = prometheus
        self.min_step = step

    async def _ask(self, path: str, **params: Any) -> Any:
        query = "&".join(f"{k}={url_escape(str(v))}" for k, v in params.items())
        reply = await httpclient.AsyncHTTPClient().fetch(f"{self.prometheus}{path}?{query}", request_timeout=10)
        return json_decode(reply.body)["data"]

    async def _panel(self, panel: Panel, start: float, end: float, step: int) -> str:
        try:
            data = await self._ask("/api/v1/query_range", query=panel.expr, start=start, end=end, step=step)
        except (httpclient.HTTPError, OSError) as exc:
            return f'<p class="error">Prometheus did not answer: {html.escape(str(exc))}</p>'
        series = [
            # 0/0 (a hit ratio without traffic) comes back as NaN: no point rather than a broken line.
            (
                _legend(panel.legend, r["metric"]),
                [(float(t), float(v)) for t, v in r["values"] if math.isfinite(float(v))],
            )
            for r in data["result"]
        ]
        return svg_plot(series, start, end)

    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        if not user.get("admin"):
            raise web.HTTPError(403, "the operator page is for admins")
        hours = min(max(float(self.get_argument("hours", "1")), 0.1), 24 * 7)
        end = time.time()
        start = end - hours * 3600
        step = max(self.min_step, int(hours * 3600 / POINTS))
        sections = []
        for panel in PANELS:
            plot = await self._panel(panel, start, end, step)
            sections.append(
                f"<section><h2>{html.escape(panel.title)}</h2>{plot}<code>{html.escape(panel.expr)}</code></section>"
            )
        try:
            alerts = [a for a in (await self._ask("/api/v1/alerts"))["alerts"] if a["state"] == "firing"]
        except (httpclient.HTTPError, OSError):
            alerts = []
        firing = "".join(
            f"<li><b>{html.escape(a['labels']['alertname'])}</b>: {html.escape(a['annotations'].get('summary', ''))}"
            for a in alerts
        )
        self.write(
            "<!doctype html><html><head><meta charset='utf-8'><title>Facility metrics</title><style>"
            "body{font-family:sans-serif;margin:1em}main{display:flex;flex-wrap:wrap;gap:1em}"
            "section{width:440px}h2{font-size:1em;margin:.2em 0}code{font-size:.7em;color:#666}"
            ".legend{font-size:.8em;margin:.2em 0;padding-left:1em}.scale{font-size:.7em;color:#666}"
            "</style></head><body>"
            f"<h1>Facility metrics, last {hours:g} h</h1>"
            f"<p>Firing alerts: {'<ul>' + firing + '</ul>' if firing else 'none'}</p>"
            f"<main>{''.join(sections)}</main></body></html>"
        )


def make_app(runtime: Runtime, prefix: str) -> web.Application:
    metrics = runtime.metrics
    prefix = prefix.rstrip("/")
    return web.Application(
        [
            (rf"{prefix}/oauth_callback", HubOAuthCallbackHandler),
            (
                rf"{prefix}/?",
                OperatorPage,
                {
                    "prometheus": f"http://127.0.0.1:{metrics['prometheus_port']}",
                    "step": metrics["scrape_interval_seconds"],
                },
            ),
        ],
        cookie_secret=os.urandom(32),
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runtime = read_runtime()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    bind = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    make_app(runtime, prefix).listen(bind.port, address=bind.hostname)
    log.info("operator page at %s", prefix)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
