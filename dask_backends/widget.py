"""ClusterWidget: the JupyterLab panel's choices as an ipywidget inside a notebook.

    from dask_backends.widget import ClusterWidget
    widget = ClusterWidget()
    widget            # shows it; pick, then press Create
    client = widget.client   # a dask.distributed Client of the cluster it created

Pick a backend (only those the user may use), its cluster options and workers, then create,
scale, make adaptive or stop the cluster; the worker count updates live and the dashboard link
appears once the scheduler runs. Each number shows its limits; a value beyond them is set to the
limit and the widget says so. Errors from the gateway are shown in the widget in plain words.

After a kernel restart, the widget's old output says "model not found": the widget lived in the
kernel that was stopped (ipywidgets keeps no state in the notebook). Run the cell again.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
from dask_gateway import GatewayCluster
from distributed import Client
from tornado.ioloop import PeriodicCallback

from backends.common import cluster_names
from dask_backends import catalog
from dask_backends.client import new_cluster

REFRESH_MS = 1000
# Each label sits above its field and each field shrinks with the notebook, so that nothing is cut
# off or spills out of a narrow notebook (JupyterLab at 760 px beside the Dask panel leaves the
# notebook about 200 px). ipywidgets' own labels sit beside the field, fixed-width and unwrapped.
FIELD_LAYOUT = w.Layout(max_width="22em")
ROOT_CLASS = "af-cluster-widget"
# Scoped to this widget: wrapping labels and plain line heights instead of ipywidgets' one-line rows.
STYLE = f"""<style>
.{ROOT_CLASS} {{ max-width: 100%; }}
.{ROOT_CLASS} .widget-label, .{ROOT_CLASS} .widget-label-basic, .{ROOT_CLASS} .widget-label-basic span,
.{ROOT_CLASS} .widget-checkbox label {{ white-space: normal; overflow: visible; height: auto; line-height: 1.3; }}
.{ROOT_CLASS} .widget-html-content {{ line-height: 1.4; height: auto; }}
.{ROOT_CLASS} .af-field {{ margin-bottom: 6px; }}
.{ROOT_CLASS} .af-field > .widget-inline-hbox {{ width: auto; }}
.{ROOT_CLASS} .widget-checkbox {{ height: auto; min-height: 28px; margin-bottom: 6px; }}
.{ROOT_CLASS} .af-field .widget-label {{ margin-bottom: 2px; }}
.{ROOT_CLASS} .af-buttons {{ flex-wrap: wrap; gap: 4px; }}
.{ROOT_CLASS} .af-hint, .{ROOT_CLASS} .af-clamped {{ font-size: var(--jp-ui-font-size0, 11px); }}
.{ROOT_CLASS} .af-hint {{ color: var(--jp-ui-font-color2, #616161); }}
</style>"""
UNITS = {"worker_memory_gb": "GB", "worker_cores": "cores", "worker_gpus": "GPUs", "workers": "workers"}


class LimitedInt(w.VBox):
    """A whole number, its label above and its limits below. A value beyond them is set to the limit and the
    hint says so (ipywidgets' BoundedIntText clamps without a word)."""

    def __init__(self, field: str, label: str, value: int, low: int, high: int, where: str):
        self.field, self.low, self.high, self.where = field, low, high, where
        self.number = w.IntText(value=value, layout=FIELD_LAYOUT)
        self.hint = w.HTML()
        self._clamping = False
        self._say_limits()
        self.number.observe(self._clamp, names="value")
        self.label = w.Label(label)
        super().__init__([self.label, self.number, self.hint])
        self.add_class("af-field")

    @property
    def value(self) -> int:
        return int(self.number.value)

    @value.setter
    def value(self, new: int) -> None:
        self.number.value = new

    def _say_limits(self) -> None:
        self.hint.value = f"<span class='af-hint'>{self.low} to {self.high} {UNITS.get(self.field, '')}</span>"

    def _clamp(self, change: dict[str, Any]) -> None:
        asked = change["new"]
        if self.low <= asked <= self.high:
            if not self._clamping:  # the limit just set keeps its note
                self._say_limits()
            return
        limit = self.high if asked > self.high else self.low
        self._clamping = True
        try:
            self.number.value = limit
        finally:
            self._clamping = False
        side = "at most" if asked > self.high else "at least"
        self.hint.value = (
            f"<span class='af-clamped' style='color: var(--jp-warn-color1, #b26a00)'>"
            f"{asked} asked; {html.escape(self.where)} allows {side} {limit}, so {limit} it is</span>"
        )


def labelled(label: str, control: w.Widget) -> w.VBox:
    """A field with its label above it."""
    field = w.VBox([w.Label(label), control])
    field.add_class("af-field")
    return field


def _option_widget(option: dict[str, Any], where: str) -> w.Widget:
    """The widget holding the option's value (read by ClusterWidget.options through `.value`)."""
    spec = option["spec"]
    label = option["label"]
    if spec["type"] == "select":
        return w.Dropdown(options=spec["options"], value=option["default"], layout=FIELD_LAYOUT)
    if spec["type"] == "int":
        return LimitedInt(option["field"], label, option["default"], spec["min"], spec["max"], where)
    if spec["type"] == "bool":
        return w.Checkbox(value=bool(option["default"]), description=label, indent=False, layout=w.Layout(width="auto"))
    return w.Text(
        value=str(option["default"]),
        placeholder="optional" if option["field"] == "cluster_name" else "",
        layout=FIELD_LAYOUT,
    )


def _shown(option: dict[str, Any], value_holder: w.Widget) -> w.Widget:
    """How an option's widget is shown: labelled above unless it carries its own label."""
    if isinstance(value_holder, (LimitedInt, w.Checkbox)):
        return value_holder
    return labelled(option["label"], value_holder)


def _backend_title(backend: dict[str, Any]) -> str:
    """The backend's name once: "This machine", not "This machine (this machine)"."""
    kind = backend["kind_label"].strip()
    same = not kind or kind.lower() == backend["label"].strip().lower()
    return backend["label"] if same else f"{backend['label']} ({kind})"


class ClusterWidget(w.VBox):
    """Create and manage one Dask cluster on any backend the user may use."""

    def __init__(self, backends: list[dict[str, Any]] | None = None, api_token: str | None = None):
        self.backends = {b["name"]: b for b in (backends if backends is not None else catalog.user_backends())}
        self.api_token = api_token
        self.cluster: GatewayCluster | None = None
        self._client: Client | None = None
        self.cluster_name = ""  # the readable one (backends.common.cluster_names)
        self._refresh: PeriodicCallback | None = None
        self.backend = w.Dropdown(
            options=[(_backend_title(b), name) for name, b in self.backends.items()], layout=FIELD_LAYOUT
        )
        self.about = w.HTML()
        self.options_box = w.VBox()
        self.workers_box = w.VBox()
        self.workers = LimitedInt("workers", "Workers", 0, 0, 0, "")
        self.adaptive = w.Checkbox(
            description="Adaptive: scale with the load", value=False, indent=False, layout=w.Layout(width="auto")
        )
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
        buttons = w.HBox([self.create_button, self.scale_button, self.stop_button])
        buttons.add_class("af-buttons")
        for button in buttons.children:
            button.layout.width = "auto"
        super().__init__(
            [
                w.HTML(STYLE),
                labelled("Backend", self.backend),
                self.about,
                self.options_box,
                self.workers_box,
                self.adaptive,
                buttons,
                self.status,
                self.error,
            ]
        )
        self.add_class(ROOT_CLASS)
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
        minutes = backend["idle_timeout_minutes"]
        self.about.value = (
            f"<p>{html.escape(backend['description'])}<br><small>Workers {limits['min']} to {limits['max']}; "
            f"idle clusters stop after {minutes} minute{'' if minutes == 1 else 's'}.</small></p>"
        )
        where = backend["label"]
        self.option_widgets = {o["field"]: _option_widget(o, where) for o in backend["options"]}
        self.options_box.children = [_shown(o, self.option_widgets[o["field"]]) for o in backend["options"]]
        self.workers = LimitedInt("workers", "Workers", limits["default"], limits["min"], limits["max"], where)
        self.workers_box.children = [self.workers]
        self.backend.disabled = self.cluster is not None

    def _guard(self, action: Any) -> None:
        # A button's error must reach the user, not a log they never see.
        self.error.value = ""
        try:
            action()
        except Exception as exc:
            self.error.value = (
                f"<div style='color: var(--jp-error-color1, #b00020)'><b>Not done:</b> {html.escape(str(exc))}</div>"
            )

    def options(self) -> dict[str, Any]:
        values = {field: widget.value for field, widget in self.option_widgets.items()}
        if isinstance(values.get("cluster_name"), str):
            values["cluster_name"] = values["cluster_name"].strip()
        return values

    @property
    def client(self) -> Client:
        """A dask.distributed Client of the cluster this widget created (made once, then reused).

        RuntimeError before Create and after Stop.
        """
        if self.cluster is None:
            raise RuntimeError("no cluster yet: press Create in the widget (or call widget.create()) first")
        if self._client is None:
            self._client = self.cluster.get_client(set_as_default=True)
        return self._client

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
        report = self.cluster.gateway.get_cluster(self.cluster.name)
        self.cluster_name = cluster_names.display_name(report.options, self.cluster.name)
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
        count = self.worker_count()
        self.status.value = (
            f"<b>{html.escape(self.cluster_name)}</b> on {html.escape(self.chosen['label'])}: "
            f"<span class='af-workers'>{count}</span> worker{'' if count == 1 else 's'} · "
            f"<a href='{html.escape(link)}' target='_blank'>dashboard</a> · "
            "<code>widget.client</code> gives a client"
        )

    def stop(self) -> None:
        if self.cluster is None:
            return
        if self._refresh is not None:
            self.cluster.loop.add_callback(self._refresh.stop)
        if self._client is not None:
            self._client.close()
            self._client = None
        self.cluster.shutdown()
        self.cluster = None
        self.status.value = f"Cluster {html.escape(self.cluster_name)} stopped."
        self.create_button.disabled = False
        self.backend.disabled = False
        self.scale_button.disabled = self.stop_button.disabled = True
