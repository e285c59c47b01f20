"""FacilitySpawner: one spawn form for every backend in facility.yaml.

It renders the form from facility.yaml, validates what comes back on the server (form posts and
REST API requests alike), and hands the validated request to the real spawner of the chosen
backend (wrapspawner's child mechanism): SimpleLocalProcessSpawner, KubeSpawner, or
batchspawner's Slurm / Condor spawners.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Dict, Unicode, default
from wrapspawner import WrapSpawner

import facility
from backends.common.progress import ANSWERING
from backends.registry import kind_of
from facility.events import Event, EventStore
from facility.model import Backend, Facility
from hub_config import children, events, quota, spawn_queue, start_deadline
from hub_config.idle_groups import sync_idle_group
from hub_config.server_summary import summary_of
from hub_config.spawn_words import kind_badge, lifetime_lines, size_words

_templates = Environment(loader=PackageLoader("hub_config", "templates"), autoescape=select_autoescape(["html"]))


def number_fields(backend: Backend) -> list[tuple[str, str, Any]]:
    """The numeric form fields that apply to a backend, as (name, label, range)."""
    fields = [("cores", "CPU cores", backend.cores), ("memory_gb", "Memory (GB)", backend.memory_gb)]
    if backend.has_gpus:
        fields.append(("gpus", "GPUs", backend.gpus))
    if backend.walltime_hours:
        fields.append(("walltime_hours", "Wall time (hours)", backend.walltime_hours))
    return fields


def render_form(
    fac: Facility,
    backends: list[Backend],
    remembered: dict[str, Any] | None = None,
    groups: frozenset[str] = frozenset(),
) -> str:
    """The form; `remembered` (the user's last valid options per backend and the last backend)
    pre-fills it; `groups` (the user's) choose the idle timeout it states."""
    remembered = remembered or {}
    per_backend = remembered.get("options", {})
    names = [b.name for b in backends]
    chosen = remembered.get("backend") if remembered.get("backend") in names else names[0]

    def value(backend: Backend, field: str, default: Any) -> Any:
        return per_backend.get(backend.name, {}).get(field, default)

    return _templates.get_template("spawn_form.html").render(
        backends=backends,
        chosen=chosen,
        value=value,
        images_for=fac.images_for,
        default_image=fac.default_image.name,
        number_fields=number_fields,
        kind_of=kind_of,
        kind_badge=kind_badge,
        lifetime_lines=lambda b: lifetime_lines(fac, b, groups),
        remembered=bool(per_backend),
    )


def remembered_answer(remembered: dict[str, Any], request: facility.SpawnRequest) -> dict[str, Any]:
    """The remembered options after a spawn of `request`: its backend first, its values kept."""
    options = {k: v for k, v in remembered.get("options", {}).items() if k != request.backend}
    options[request.backend] = request.as_options()
    return {"backend": request.backend, "options": options}


def admit(spawner: Any) -> Awaitable[None] | None:
    """For the authenticators' pre_spawn_start: refuse a request outside the user's allowance at
    once (raising), and return the quota check to await (None for a spawner without checks).

    Nothing may be awaited before the refusal: with the hub's slow_spawn_timeout at 0 the REST API
    answers 400 only for a refusal that comes at once (FacilitySpawner.admitted).
    """
    check = getattr(spawner, "admitted", None)
    return check(spawner.user_options or {}) if check is not None else None


class FacilitySpawner(WrapSpawner):
    """Spawn a notebook server on the backend the user picks from facility.yaml."""

    facility_file = Unicode(
        "", config=True, help="Path of facility.yaml; empty means $AF_FACILITY or the embedded default."
    )
    gateway_urls = Dict(
        config=True,
        help="dask-gateway address per backend name, handed to notebooks so dask_backends can reach them.",
    )
    data_environments = Dict(
        config=True,
        help="$AF_DATA_* (data-lake origin and cache URLs) per backend name, for dask_backends.data.",
    )
    examples_repo = Unicode(
        "", config=True, help="The facility's examples repository, pulled into ~/examples (hub_config/examples.py)."
    )
    events_file = Unicode("", config=True, help="The facility's events (facility.events), read at each spawn.")
    home_dir_template = Unicode(
        "~/af-home/{username}", config=True, help="Home folder of local-backend notebook servers."
    )

    @property
    def facility(self) -> Facility:
        # facility.loader's reload policy: an operator's edit reaches the next spawn.
        return facility.current(self.facility_file or None)

    def _groups(self) -> set[str]:
        return {g.name for g in self.user.groups}

    def event(self) -> Event | None:
        """The event this user takes part in, as events.json says now."""
        return EventStore(self.events_file).event_of(self.user.name) if self.events_file else None

    def allowed_backends(self) -> list[Backend]:
        event = self.event()
        also = event.allowance if event else None
        return facility.validation.allowed_backends(self.facility, self._groups(), bool(self.user.admin), also)

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    def _render_options_form(self, spawner: FacilitySpawner) -> str:
        event = self.event()
        refusal = event.refusal() if event else None
        if refusal:
            return f"<p class='alert alert-danger'>{html.escape(refusal)}</p>"
        backends = self.allowed_backends()
        if not backends:
            return "<p class='alert alert-danger'>Your account is not in any group that may start servers here.</p>"
        return render_form(self.facility, backends, self._still_valid(self.last_options), frozenset(self._groups()))

    # The user's last options per backend ({"backend": name, "options": {name: options}}), kept in
    # the spawner's state across stops (clear_state leaves them), so the form pre-fills them.
    last_options: dict[str, Any] = {}

    def _still_valid(self, remembered: dict[str, Any]) -> dict[str, Any]:
        """The remembered options that facility.yaml and the user's groups still allow."""
        kept = {}
        for name, options in (remembered.get("options") or {}).items():
            try:
                kept[name] = self.validated(options).as_options()
            except web.HTTPError:
                continue  # a limit or an allowance changed since: the defaults instead
        return {"backend": remembered.get("backend"), "options": kept}

    async def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        # Raising here re-renders the form with the message and spawns nothing (the hub awaits this).
        fields = {k: v for k, v in formdata.items() if k != "_xsrf"}  # the hub's CSRF token, not an option
        request = self.validated(fields, form=True)
        try:
            await quota.refuse_over_quota(self, request)
        except web.HTTPError as exc:  # the form again, saying in words (no "HTTP 403") what the user holds where
            raise ValueError(exc.log_message) from None
        return request.as_options()

    def validated(self, options: dict[str, Any], form: bool = False) -> facility.SpawnRequest:
        event = self.event()
        refusal = event.spawn_refusal() if event else None
        if refusal:  # outside the event's window (pre-warming from shortly before), whatever was asked
            raise web.HTTPError(403, f"Cannot start your server: {refusal}", reason="Forbidden")
        try:
            options = facility.validation.from_form(options) if form else options
            also = event.allowance if event else None
            return facility.validate_spawn(self.facility, options, self._groups(), bool(self.user.admin), also)
        except facility.RequestError as exc:
            raise web.HTTPError(400, f"Cannot start your server: {exc}", reason="Bad Request") from None

    # False from a spawn's admission until start() hands it to a backend: a spawn refused before
    # then ran no notebook. True otherwise, for a server the hub restored after its own restart.
    _launched = True

    def admitted(self, options: dict[str, Any]) -> Coroutine[Any, Any, None]:
        """Check the request against the user's allowance now, and return the quota check to await.

        The authenticators call this in pre_spawn_start: with the hub's slow_spawn_timeout at 0, the
        REST API answers a refusal as an error only if it comes at once, as the allowance's does. The
        quota's asks the gateways, so a REST client may get 202 and then the failed spawn's message.
        """
        self._launched = False
        request = self.validated(options)
        return quota.refuse_over_quota(self, request)

    _queued: spawn_queue.QueuedSpawn | None = None

    def run_pre_spawn_hook(self) -> Any:
        # Local servers wait their turn here (hub_config.spawn_queue): before the hub's start
        # timeout runs, after the request is checked. Not a coroutine: a refusal must come before
        # anything is awaited, or the hub's REST API answers 202 instead of 400.
        request = self.validated(self.user_options or {})
        fac = self.facility
        self._queued = None
        if spawn_queue.queues(fac, request.backend):
            limit = fac.hub.spawn.concurrent
            self._queued = spawn_queue.QueuedSpawn(spawn_queue.hub_queue(limit), lambda: self.pending == "spawn")
            turn = self._queued.enter()
            if turn is not None:
                return self._hook_after(turn)
        return super().run_pre_spawn_hook()

    async def _hook_after(self, turn: Awaitable[None]) -> Any:
        await turn
        hook = super().run_pre_spawn_hook()
        return await hook if inspect.isawaitable(hook) else hook

    def start(self):
        self._launched = True
        # The REST API passes user_options straight here: validate again, before any child exists.
        request = self.validated(self.user_options or {})
        self.user_options = request.as_options()
        self.last_options = remembered_answer(self.last_options, request)
        fac = self.facility
        sync_idle_group(self.user, fac.hub.idle_cull)  # the culler of this user's timeout sees the server
        backend = fac.backend(request.backend)
        child = children.child_for(fac, backend, request, self)
        event = self.event()
        if event is not None:  # a participant's server opens on the event's materials
            child = events.with_materials(child, event, self.hub.url)
        self.child_class, self.child_config = child
        self.child_spawner = None
        self.construct_child()
        self.log.info("Starting %s on backend %s with %s", self._log_name, backend.name, json.dumps(self.user_options))
        starting = start_deadline.within(
            self.child_spawner.start(), self.start_timeout, backend.label, self.child_spawner
        )
        return self._said_in_words(starting)

    def run_post_stop_hook(self) -> Any:
        # The hub "stops" a spawn it refused (quota, allowance, a queue left) and runs this hook;
        # the user's clusters must not stop because a server they did not get had none.
        if not self._launched:
            self.log.info("%s was refused before it started: its clusters are left running", self._log_name)
            return None
        return super().run_post_stop_hook()

    @staticmethod
    async def _said_in_words(starting: Awaitable[Any]) -> Any:
        try:
            return await starting
        except RuntimeError as exc:
            # The backends' own refusals ("Cannot start your server: ...") are written for the user:
            # the spawn page shows only messages marked so (jupyterhub.utils.format_exception).
            if not hasattr(exc, "jupyterhub_message"):
                exc.jupyterhub_message = str(exc)
            raise

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Progress events for the hub's spawn page: the request checked, then the child spawner's
        steps (backends.common.progress: account, job submitted, queued with the scheduler's
        reason, running; KubeSpawner's pod events), then the wait for the server to answer. The hub
        stops reading when the server is up (its own last event, 100), so the waiting messages below
        need no end of their own."""
        while self.child_spawner is None:  # start() has not handed the request to a backend yet
            if self._queued is not None:  # waiting in line: say for how many others
                async for event in self._queued.progress():
                    yield event
            await asyncio.sleep(0.2)
        opts = self.user_options or {}
        backend = self.facility.backend(opts["backend"])
        sizes = size_words(opts)
        yield {"progress": 10, "message": f"Request checked: {backend.label}, {sizes}, image {opts.get('image')}"}
        # The bar only moves forward: a child may say a step after a later one (a batch job's
        # "submitted" landed after its first "waits in the queue"), its message still in order.
        reached = 10
        child = self.child_spawner
        if type(child).progress is not Spawner.progress:  # the child has real events
            async for event in child.progress():
                reached = max(reached, min(int(event.get("progress", 50)), 90))
                yield {**event, "progress": reached}
        for waited in itertools.count():  # seconds, roughly: the hub's poll decides when it ends
            # Closer to 95 with each second, never there: the hub's "ready" is 100.
            progress = reached = max(reached, 95 - int((95 - ANSWERING) * 0.85**waited))
            # Every event with a message is a line in the page's log: a line every 10 s, the bar each second.
            if waited % 10 == 0:
                word = "Waiting for your server to answer" + (f" ({waited} s so far)" if waited else "")
                yield {"progress": progress, "message": word}
            else:
                yield {"progress": progress}
            await asyncio.sleep(1)

    def backend_labels(self) -> dict[str, str]:
        """Each backend's label by name, for pages that get names from the gateways."""
        return {b.name: b.label for b in self.facility.backends}

    def summary(self) -> dict[str, Any]:
        """Backend, size and age of this server in words, for the hub's pages (server_summary.py)."""
        return summary_of(self)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.child_spawner is not None:
            state["child_class"] = f"{self.child_class.__module__}.{self.child_class.__name__}"
        if self.last_options:
            state["last_options"] = self.last_options
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.last_options = state.get("last_options") or {}

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
            dashboards = self.environment.get("AF_DASK_DASHBOARDS_URL")  # the hub's dashboard service
            if dashboards:
                env["DASK_GATEWAY__PUBLIC_ADDRESS"] = f"{dashboards}/{backend.name}"
        env.update(self.data_environments.get(backend.name, {}))
        return env
