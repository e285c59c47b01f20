"""FacilitySpawner: one spawn form for every backend in facility.yaml.

It renders the form from facility.yaml, validates what comes back on the server (form posts and
REST API requests alike), and hands the validated request to the real spawner of the chosen
backend (wrapspawner's child mechanism): SimpleLocalProcessSpawner, KubeSpawner, or
batchspawner's Slurm / Condor spawners.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from tornado import web
from traitlets import Dict, Unicode, default
from wrapspawner import WrapSpawner

import facility
from facility.model import Backend, Facility
from hub_config import children

KIND_LABELS = {"local": "local", "kubernetes": "cloud", "slurm": "HPC / Slurm", "htcondor": "grid / HTCondor"}

_templates = Environment(loader=PackageLoader("hub_config", "templates"), autoescape=select_autoescape(["html"]))


def number_fields(backend: Backend) -> list[tuple[str, str, Any]]:
    """The numeric form fields that apply to a backend, as (name, label, range)."""
    fields = [("cores", "CPU cores", backend.cores), ("memory_gb", "Memory (GB)", backend.memory_gb)]
    if backend.has_gpus:
        fields.append(("gpus", "GPUs", backend.gpus))
    if backend.walltime_hours:
        fields.append(("walltime_hours", "Wall time (hours)", backend.walltime_hours))
    return fields


def render_form(fac: Facility, backends: list[Backend]) -> str:
    return _templates.get_template("spawn_form.html").render(
        backends=backends,
        kind_labels=KIND_LABELS,
        images_for=fac.images_for,
        default_image=fac.default_image.name,
        number_fields=number_fields,
    )


class FacilitySpawner(WrapSpawner):
    """Spawn a notebook server on the backend the user picks from facility.yaml."""

    facility_file = Unicode(
        "", config=True, help="Path of facility.yaml; empty means $AF_FACILITY or the embedded default."
    )
    gateway_urls = Dict(
        config=True,
        help="dask-gateway address per backend name, handed to notebooks so dask_backends can reach them.",
    )
    home_dir_template = Unicode(
        "~/af-home/{username}", config=True, help="Home folder of local-backend notebook servers."
    )

    @property
    def facility(self) -> Facility:
        # Loaded per use: operators edit facility.yaml and the next spawn sees it; it is small.
        return facility.load(self.facility_file or None)

    def _groups(self) -> set[str]:
        return {g.name for g in self.user.groups}

    def allowed_backends(self) -> list[Backend]:
        return facility.validation.allowed_backends(self.facility, self._groups(), bool(self.user.admin))

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    def _render_options_form(self, spawner: FacilitySpawner) -> str:
        backends = self.allowed_backends()
        if not backends:
            return "<p class='alert alert-danger'>Your account is not in any group that may start servers here.</p>"
        return render_form(self.facility, backends)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        # Raising here re-renders the form with the message and spawns nothing.
        fields = {k: v for k, v in formdata.items() if k != "_xsrf"}  # the hub's CSRF token, not an option
        return self.validated(fields).as_options()

    def validated(self, options: dict[str, Any]) -> facility.SpawnRequest:
        try:
            return facility.validate_spawn(self.facility, options, self._groups(), bool(self.user.admin))
        except facility.RequestError as exc:
            raise web.HTTPError(400, f"Cannot start your server: {exc}", reason="Bad Request") from None

    def start(self):
        # The REST API passes user_options straight here: validate again, before any child exists.
        request = self.validated(self.user_options or {})
        self.user_options = request.as_options()
        fac = self.facility
        backend = fac.backend(request.backend)
        self.child_class, self.child_config = children.child_for(fac, backend, request, self)
        self.child_spawner = None
        self.construct_child()
        self.log.info("Starting %s on backend %s with %s", self._log_name, backend.name, json.dumps(self.user_options))
        return self.child_spawner.start()

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.child_spawner is not None:
            state["child_class"] = f"{self.child_class.__module__}.{self.child_class.__name__}"
        return state

    def load_child_class(self, state: dict[str, Any]) -> None:
        # Restores the right child after a hub restart, so running servers are polled and stopped.
        path = state.get("child_class")
        if path:
            self.child_class = children.import_spawner(path)

    def environment_for_notebook(self, backend: Backend) -> dict[str, str]:
        """What a notebook needs to find the user's dask-gateways and data cache."""
        usable = {b.name for b in self.allowed_backends()}
        gateways = {name: url for name, url in self.gateway_urls.items() if name in usable}
        env = {"AF_BACKEND": backend.name, "AF_DASK_GATEWAYS": json.dumps(gateways)}
        if backend.name in gateways:
            env["DASK_GATEWAY__ADDRESS"] = gateways[backend.name]
            env["DASK_GATEWAY__AUTH__TYPE"] = "jupyterhub"
        return env
