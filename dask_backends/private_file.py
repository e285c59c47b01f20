"""Writing a secret (a token) to a file only its owner may read: used by the hub and by Dask workers."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str, group: int | None = None) -> None:
    """Write text to path readable by its owner only (0600), replacing any older file atomically.

    With `group`, members of that group (a user's private group) may read it too (0640): how the
    hub, as root, hands a token file to a user's own Unix account.
    """
    mode = 0o600 if group is None else 0o640
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)
