"""Events in the hub (facility.events): their materials served like the examples, the `af event`
token registered, and a participant's server opening through nbgitpuller on the event's materials.

The window and the allowance are checked where every login and spawn passes: the authenticator
(hub_config/auth.py) and FacilitySpawner.validated (hub_config/spawner.py), both reading
``events.json`` again at each call, so `af event end` takes effect at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web

from backends.common.notebook_child import ChildConfig
from facility import event_materials
from facility.events import Event, events_path
from facility.hub_services import events_service, hub_entry, hub_role
from facility.runtime import Runtime
from hub_config.examples_http import ExamplesRepoHandler, served_file

ROUTE = r"/events/([a-z0-9][a-z0-9-]{0,23})\.git/(.*)"  # below the hub's prefix: /hub/events/<name>.git/...


class EventMaterialsHandler(ExamplesRepoHandler):
    """An event's published materials over dumb HTTP, with the examples' limits (served_file)."""

    def initialize(self, path: str, default_filename: str | None = None) -> None:
        super().initialize(path, default_filename)
        self.events_root = Path(path)

    async def get(self, event: str, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        root = self.events_root / f"{event}.git"
        if served_file(root, path) is None:
            raise web.HTTPError(404)
        self.root = str(root)
        await super().get(path, include_body=include_body)

    def head(self, event: str, path: str) -> Any:  # type: ignore[override]
        return self.get(event, path, include_body=False)


def configure(c: Any, runtime: Runtime, local_auth: bool) -> None:
    """Tell the login and the spawner where the events are, serve their materials, register `af event`'s token."""
    store = str(events_path(runtime.state_path))
    c.FacilitySpawner.events_file = store
    if local_auth:  # participants log in with the facility's own credentials (facility.credentials)
        c.FacilityPasswordAuthenticator.events_file = store
    c.JupyterHub.extra_handlers.append(
        (ROUTE, EventMaterialsHandler, {"path": str(event_materials.repos_folder(runtime.state_path))})
    )
    service = events_service()
    c.JupyterHub.services.append(hub_entry(runtime, service))
    role = hub_role(service)
    if role:
        c.JupyterHub.load_roles.append(role)


def with_materials(child: ChildConfig, event: Event, hub_url: str) -> ChildConfig:
    """A participant's child spawner config: the server opens by pulling the event's materials into
    ~/<event> (nbgitpuller keeps the participant's edits) and git maps af-hub:// to this hub."""
    if not event.materials:
        return child
    cls, config = child
    config = {**config, "default_url": event_materials.pull_url(event.name, event.materials, event.branch)}
    config["environment"] = {**config.get("environment", {}), **event_materials.git_environment(hub_url)}
    return cls, config
