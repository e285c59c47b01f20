"""The examples repository over HTTP, read-only, from the hub itself: /hub/examples.git/...

Git's "dumb HTTP" protocol needs nothing but static files: `facility.examples.publish` runs
`git update-server-info` after each commit (info/refs, objects/info/packs), and a client then
fetches HEAD, info/refs and the objects it lacks. Notebook servers of every backend reach the hub
already (their JUPYTERHUB_API_URL), so this is the one address all of them can pull from.

Only those files are served: a request for anything else of the repository (config, hooks, the
index) or outside it (`..`, a symlink leading out) is answered 404, saying nothing about what exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from tornado import web

from facility import examples

ROUTE = rf"/{re.escape(examples.REPO_NAME)}/(.*)"  # below the hub's prefix: /hub/examples.git/...
# What a dumb-HTTP clone or fetch reads (git's http-fetch), and nothing else.
_SERVED = re.compile(
    r"HEAD|info/refs|objects/info/packs"
    r"|objects/[0-9a-f]{2}/[0-9a-f]{38}(?:[0-9a-f]{24})?"
    r"|objects/pack/pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx)"
)
# These name the current commit and change at each publish; objects never change once written.
_CHANGING = {"HEAD", "info/refs", "objects/info/packs"}


def served_file(root: Path, path: str) -> Path | None:
    """The file of the repository at `root` that `path` names, or None when it must not be served.

    Served: the dumb-HTTP files above, as regular files whose real location lies inside `root`.
    """
    if not _SERVED.fullmatch(path):  # also refuses "..", "//", absolute paths and backslashes
        return None
    real_root = Path(root).resolve()
    target = (real_root / path).resolve()  # follows symlinks: one leading out is caught below
    if not target.is_relative_to(real_root) or not target.is_file():
        return None
    return target


class ExamplesRepoHandler(web.StaticFileHandler):
    """tornado's static files (ranges, ETags, HEAD requests), limited to `served_file`."""

    async def get(self, path: str, include_body: bool = True) -> None:
        if served_file(Path(self.root), path) is None:
            raise web.HTTPError(404)
        await super().get(path, include_body=include_body)

    def set_extra_headers(self, path: str) -> None:
        if path in _CHANGING:  # a later fetch must see the next publish's commit
            self.set_header("Cache-Control", "no-cache")
