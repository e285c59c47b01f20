"""Writing a secret (a token) to a file only its owner may read: used by the hub and by Dask workers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, {} while the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


@contextlib.contextmanager
def changing_json(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON object in `path`, written back (0600) when the block ends, under an exclusive lock
    file beside it: processes changing the same file one after the other lose nothing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_json_object(path)
        yield data
        write_private(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    finally:
        os.close(lock)
