"""ClusterWidget: the JupyterLab panel's choices as an ipywidget inside a notebook.

    from dask_backends.widget import ClusterWidget
    ClusterWidget()

Pick a backend (only those the user may use), its cluster options and workers, then create,
scale, make adaptive or stop the cluster; the worker count updates live and the dashboard link
appears once the scheduler runs. Errors from the gateway are shown in the widget.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
from dask_gateway import GatewayCluster
from tornado.ioloop import PeriodicCallback

from dask_backends import catalog
from dask_backends.client import new_cluster

REFRESH_MS = 1000


def _option_widget(option: dict[str, Any]) -> w.Widget:
    spec = option["spec"]
    style = {"description_width": "10em"}
    if spec["type"] == "select":
        return w.Dropdown(options=spec["options"], value=option["default"], description=option["label"], style=style)
    if spec["type"] == "int":
        return w.BoundedIntText(
            value=option["default"], min=spec["min"], max=spec["max"], description=option["label"], style=style
        )
    if spec["type"] == "bool":
        return w.Checkbox(value=bool(option["default"]), description=option["label"], indent=False)
    return w.Text(value=str(option["default"]), description=option["label"], style=style)


class ClusterWidget(w.VBox):
    """Create and manage one Dask cluster on any backend the user may use."""

    def __init__(self, backends: list[dict[str, Any]] | None = None, api_token: str | None = None):
        self.backends = {b["name"]: b for b in (backends if backends is not None else catalog.user_backends())}
        self.api_token = api_token
        self.cluster: GatewayCluster | None = None
        self._refresh: PeriodicCallback | None = None
        style = {"description_width": "10em"}
        self.backend = w.Dropdown(
            options=[(f"{b['label']} ({b['kind_label']})", name) for name, b in self.backends.items()],
            description="Backend",
            style=style,
        )
        self.about = w.HTML()
        self.options_box = w.VBox()
        self.workers = w.BoundedIntText(description="Workers", style=style)
        self.adaptive = w.Checkbox(description="Adaptive (scale with the load)", value=False)
        self.create_button = w.Button(description="Create", button_style="primary", icon="play")
        self.scale_button = w.Button(description="Scale", icon="arrows-v", disabled=True)
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.status = w.HTML("No cluster yet.")
        self.error = w.HTML()
        self.option_widgets: dict[str, w.Widget] = {}
        self.backend.observe(self._backend_changed, names="value")
        self.create_button.on_click(lambda _: self._guard(self.create))
        self.scale_button.on_click(lambda _: self._guard(self.apply_scaling))
        self.stop_button.on_click(lambda _: self._guard(self.stop))
        super().__init__(
            [
                self.backend,
                self.about,
                self.options_box,
                w.HBox([self.workers, self.adaptive]),
                w.HBox([self.create_button, self.scale_button, self.stop_button]),
                self.status,
                self.error,
            ]
        )
        if self.backends:
            self._backend_changed()
        else:
            self.error.value = "<b>You may not start Dask clusters on any backend.</b>"
            self.create_button.disabled = True

    @property
    def chosen(self) -> dict[str, Any]:
        return self.backends[self.backend.value]

    def _backend_changed(self, _change: Any = None) -> None:
        backend = self.chosen
        limits = backend["workers"]
        self.about.value = (
            f"<p>{html.escape(backend['description'])}<br><small>Workers {limits['min']} to {limits['max']}; "
            f"idle clusters stop after {backend['idle_timeout_minutes']} minutes.</small></p>"
        )
        self.option_widgets = {o["field"]: _option_widget(o) for o in backend["options"]}
        self.options_box.children = list(self.option_widgets.values())
        self.workers.min, self.workers.max = limits["min"], limits["max"]
        self.workers.value = limits["default"]
        self.backend.disabled = self.cluster is not None

    def _guard(self, action: Any) -> None:
        # A button's error must reach the user, not a log they never see.
        self.error.value = ""
        try:
            action()
        except Exception as exc:
            self.error.value = f"<div style='color:#b00020'><b>Error:</b> {html.escape(str(exc))}</div>"

    def options(self) -> dict[str, Any]:
        return {field: widget.value for field, widget in self.option_widgets.items()}

    def create(self) -> GatewayCluster:
        if self.cluster is not None:
            raise RuntimeError("this widget already manages a cluster: stop it first")
        catalog.check_workers(self.chosen, self.workers.value)
        self.status.value = f"Starting a cluster on {html.escape(self.chosen['label'])}…"
        try:
            self.cluster = new_cluster(self.chosen["name"], api_token=self.api_token, **self.options())
        except Exception:
            self.status.value = "No cluster."
            raise
        self.apply_scaling()
        self.create_button.disabled = True
        self.backend.disabled = True
        self.scale_button.disabled = self.stop_button.disabled = False
        self._refresh = PeriodicCallback(self.update_status, REFRESH_MS)
        self.cluster.loop.add_callback(self._refresh.start)
        self.update_status()
        return self.cluster

    def apply_scaling(self) -> None:
        if self.cluster is None:
            raise RuntimeError("no cluster yet: create one first")
        limits = self.chosen["workers"]
        if self.adaptive.value:
            self.cluster.adapt(minimum=limits["min"], maximum=limits["max"])
        else:
            catalog.check_workers(self.chosen, self.workers.value)
            self.cluster.scale(self.workers.value)

    def worker_count(self) -> int:
        return len((self.cluster.scheduler_info or {}).get("workers", {})) if self.cluster else 0

    def update_status(self) -> None:
        cluster = self.cluster
        if cluster is None:
            return
        link = cluster.dashboard_link
        self.status.value = (
            f"<b>{html.escape(cluster.name)}</b> on {html.escape(self.chosen['label'])}: "
            f"<span class='af-workers'>{self.worker_count()}</span> workers · "
            f"<a href='{html.escape(link)}' target='_blank'>dashboard</a>"
        )

    def stop(self) -> None:
        if self.cluster is None:
            return
        if self._refresh is not None:
            self.cluster.loop.add_callback(self._refresh.stop)
        self.cluster.shutdown()
        self.cluster = None
        self.status.value = "Cluster stopped."
        self.create_button.disabled = False
        self.backend.disabled = False
        self.scale_button.disabled = self.stop_button.disabled = True
