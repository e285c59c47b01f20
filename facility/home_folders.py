"""Home folders are never opened for the facility's accounts (issue 17).

Per-user accounts must pass through every folder above what they run and read (the venv, the
project, the state folder's few open entries). An ACL entry on a home folder such as /root lets
them pass into anything there that is world-readable (e.g. /root/.gitconfig). So the facility's
software and state live outside home folders (`make up`: Python in /opt/analysis-facility, root's
state in /var/lib/analysis-facility/state), granting on a home folder is refused in words, and the entries
earlier versions granted on home folders are taken back by `af up`.
"""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

FIRST_PERSON_UID = 1000  # Debian's UID_MIN: accounts of people, whose homes hold their own files
NOBODY_UID = 65534


class HomeFolderError(RuntimeError):
    """A path the facility's accounts need lies in a home folder they cannot pass."""


def home_folders() -> set[Path]:
    """Root's home and those of people's accounts (not system accounts' /var/lib/... or /nonexistent)."""
    homes = {Path("/root")}
    for entry in pwd.getpwall():
        if entry.pw_uid == 0 or FIRST_PERSON_UID <= entry.pw_uid < NOBODY_UID:
            homes.add(Path(entry.pw_dir))
    return {home.resolve() for home in homes if home.is_dir() and home != Path("/")}


def refuse_home(folder: Path, needed: Path, homes: set[Path] | None = None) -> None:
    """Raise HomeFolderError if `folder`, which `needed` lies below, is a home folder.

    `homes` is home_folders(), read once by a caller that checks many folders.
    """
    if folder in (home_folders() if homes is None else homes):
        raise HomeFolderError(
            f"{needed} lies in the home folder {folder}, which the facility's accounts cannot pass "
            "through, and the facility does not open home folders. Keep the facility's software and "
            "state outside them: `make up` installs its Python in /opt/analysis-facility and keeps "
            "root's state in /var/lib/analysis-facility/state; or set AF_STATE_DIR to a folder outside."
        )


def revoke_home_grants(group: str) -> list[Path]:
    """Remove `group`'s ACL entry from every home folder that has one (granted by earlier versions)."""
    revoked = []
    for home in sorted(home_folders()):
        listed = ["getfacl", "--omit-header", "--absolute-names", str(home)]
        acl = subprocess.run(listed, capture_output=True, text=True)
        if f"group:{group}:" in acl.stdout:
            subprocess.run(["setfacl", "--remove", f"g:{group}", str(home)], check=True)
            revoked.append(home)
    return revoked
