"""The researchers' user guide (docs/user-guide.md), as a hub page at /hub/user-guide.

`af up` renders the markdown to HTML in the state folder (af.hub_content); this handler shows it
inside the hub's own page layout, so the guide reads like the rest of the hub, logged in or not.
The hub's home and spawn pages link to it (templates/hub/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

from facility.runtime import Runtime

GUIDE_FILE = "user-guide.html"
TEMPLATES = Path(__file__).resolve().parent / "templates" / "hub"


def guide_path(state: Path) -> Path:
    """Where `af up` writes the rendered guide in the facility's state folder."""
    return Path(state) / GUIDE_FILE


class UserGuideHandler(BaseHandler):
    def initialize(self, path: str) -> None:
        self.guide = Path(path)

    async def get(self) -> None:
        try:
            body = self.guide.read_text()
        except FileNotFoundError:
            raise web.HTTPError(
                404, f"The user guide has not been rendered ({self.guide}); run `af up` again"
            ) from None
        self.finish(await self.render_template("user_guide.html", guide_html=body))


def configure(c: Any, runtime: Runtime) -> None:
    """Serve the guide and use the templates that link to it."""
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    # extra_handlers is marked deprecated in favour of services; a whole service for one page is not worth a process.
    guide = {"path": str(guide_path(runtime.state_path))}
    c.JupyterHub.extra_handlers.append((r"/user-guide", UserGuideHandler, guide))
