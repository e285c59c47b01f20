"""An ended event's participants' homes in one file for its instructors (`af event archive`).

The archive is a gzip'd tar with one folder per participant (their home as it was), written into
the state folder next to the event's materials (0600, the facility's own user); the instructors'
page serves it to the event's instructors and admins only (hub_config/event_page.py).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from facility.accounts import lookup
from facility.event_materials import repos_folder
from facility.events import Event
from facility.model import UnixAccounts


def archive_path(state: Path, event: str) -> Path:
    """Where the homes of `event`'s participants are archived."""
    return repos_folder(state) / f"{event}-homes.tar.gz"


def home_of(participant: str, accounts: UnixAccounts, state: Path) -> Path | None:
    """The participant's home on this host: their Unix account's (per-user mode) or the folder the
    local backend gives them in the state folder (shared mode); None when they never had one."""
    if accounts.per_user:
        account = lookup(participant, accounts)
        return account.home if account is not None and account.home.is_dir() else None
    home = Path(state) / "home" / participant  # hub_config/jupyterhub_config.py's home_dir_template
    return home if home.is_dir() else None


def archive_homes(state: Path, event: Event, accounts: UnixAccounts) -> tuple[Path, list[str]]:
    """Write the participants' homes into archive_path (replacing an earlier archive); the file and
    the participants whose home it holds, in the event's order."""
    target = archive_path(state, event.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    archived: list[str] = []
    # Created 0600 before anything is written: the homes are the participants' private files.
    with (
        os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as raw,
        tarfile.open(fileobj=raw, mode="w:gz") as tar,
    ):
        for participant in event.participants:
            home = home_of(participant, accounts, state)
            if home is None:
                continue
            tar.add(home, arcname=participant)  # symbolic links stay links: nothing outside the home
            archived.append(participant)
    partial.replace(target)  # a reader never sees half an archive
    return target, archived
