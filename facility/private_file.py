"""Writing a secret (a token) to a file only its owner may read: used by the hub and by Dask workers."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write text to path readable by its owner only (0600), replacing any older file atomically.

    With `owner` (uid, gid) the file is handed to that account: how the hub, as root, gives a token
    file to a user's own Unix account (XRootD's token client reads only a file the user owns).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)
