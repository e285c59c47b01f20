"""Per-user Unix accounts for the processes the facility starts on its own hosts.

With ``auth.unix_accounts.mode: per-user`` the hub user ``alice`` runs as the Unix account
``af-alice`` (prefix from facility.yaml), created on first use with its own home (0700) and
private group, and a member of the facility group. The prefix keeps hub names from mapping onto
system accounts (a hub user called ``root`` becomes ``af-root``). Hub names that are not plain
lower-case names get a hashed name instead (``af-alice-x_<16 hex>``): plain names never contain
``_``, so the two forms cannot collide. An existing account is used only if this module created
it (its GECOS field says so), never a system or site account that happens to share the name.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facility.home_folders import home_folders, refuse_home
from facility.model import UnixAccounts

GECOS_MARKER = "analysis-facility user"
MAX_NAME = 32  # useradd's limit
PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
USERADD_BUSY = 10  # useradd/groupadd: cannot lock the password or group file
HOME_ROOT = Path("/home")


class AccountError(RuntimeError):
    """An account cannot be created or used; the message says why."""


@dataclass(frozen=True)
class Account:
    hub_name: str
    name: str
    uid: int
    gid: int
    home: Path

    def setpriv_argv(self) -> list[str]:
        """Command prefix that runs a program as this account (setpriv, util-linux; no sudo needed)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]

    def preexec_fn(self, cwd: Path | None = None):  # noqa: ANN201 - a callable for subprocess' preexec_fn
        """Switch a forked child to this account (for subprocess.Popen(preexec_fn=...)), then chdir to cwd."""
        uid, gid, name = self.uid, self.gid, self.name
        groups = os.getgrouplist(name, gid)  # looked up before the fork: no NSS calls in the child
        folder = str(cwd) if cwd is not None else None

        def switch() -> None:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            if folder is not None:
                os.chdir(folder)

        return switch

    def environment(self) -> dict[str, str]:
        """The login variables of this account, for a process started as it."""
        return {"USER": self.name, "LOGNAME": self.name, "HOME": str(self.home), "SHELL": "/bin/bash"}

    def groups(self) -> list[int]:
        """The account's primary group first, then its other groups (for chroot --groups)."""
        return [self.gid, *(g for g in os.getgrouplist(self.name, self.gid) if g != self.gid)]

    def record(self) -> dict[str, Any]:
        """The account as plain data, for spawner state that the hub keeps in its database."""
        return {"hub_name": self.hub_name, "name": self.name, "uid": self.uid, "gid": self.gid, "home": str(self.home)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Account | None:
        if not record:
            return None
        return cls(record["hub_name"], record["name"], int(record["uid"]), int(record["gid"]), Path(record["home"]))


def unix_name(hub_name: str, prefix: str = "af-", group: str = "af-users") -> str:
    """The account name of a hub user: prefix + name, or prefix + cleaned name + _ + hash.

    The hashed form also replaces a plain name that is the facility's `group` or a group without an
    account of its name (hub user ``users`` would otherwise be ``af-users``): useradd gives each
    account a private group of its own name, and that would fail.
    """
    plain = prefix + hub_name
    if PLAIN_NAME.fullmatch(hub_name) and len(plain) <= MAX_NAME and not _group_taken(plain, group):
        return plain
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:16]
    cleaned = re.sub(r"[^a-z0-9-]+", "-", hub_name.lower()).strip("-") or "user"
    room = MAX_NAME - len(prefix) - 1 - len(digest)
    return f"{prefix}{cleaned[:room].rstrip('-') or 'user'}_{digest}"


def _group_taken(name: str, facility_group: str) -> bool:
    """Whether `name` cannot be an account's private group: the facility's group, or a group with no
    account of its name."""
    if name == facility_group:
        return True
    if not _group_exists(name):
        return False
    try:
        pwd.getpwnam(name)  # an account's own group: lookup() tells a facility account from a site one
        return False
    except KeyError:
        return True


def lookup(hub_name: str, settings: UnixAccounts) -> Account | None:
    """The facility account of a hub user, or None when it does not exist yet."""
    name = unix_name(hub_name, settings.prefix, settings.group)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if GECOS_MARKER not in entry.pw_gecos:
        raise AccountError(
            f"Unix account {name!r} exists but was not created by the analysis facility; "
            f"refusing to run user {hub_name!r} as it (choose another auth.unix_accounts.prefix)"
        )
    return Account(hub_name, name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def ensure_account(hub_name: str, settings: UnixAccounts, extra_roots: Sequence[Path] = ()) -> Account:
    """The hub user's account, created if missing (root only), also inside each of `extra_roots`.

    `extra_roots` are chroots whose daemons run jobs as the user (the HTCondor pool): the account
    gets the same uid and gid there, so files keep one owner on both sides.
    """
    account = lookup(hub_name, settings)
    if account is None:
        require_root(f"cannot create the Unix account for {hub_name!r}")
        _ensure_group(settings.group)
        name = unix_name(hub_name, settings.prefix, settings.group)
        try:
            _run_locked(
                ["useradd", "--create-home", "--home-dir", str(HOME_ROOT / name), "--shell", "/bin/bash"]
                + ["--user-group", "--groups", settings.group, "--comment", f"{GECOS_MARKER} {hub_name}", name]
            )
        except AccountError as exc:
            # The hub and a gateway may create the same account at once: the other one won.
            if lookup(hub_name, settings) is None:
                raise AccountError(f"cannot create the Unix account {name!r} for user {hub_name!r} ({exc})") from None
        account = lookup(hub_name, settings)
        assert account is not None
    if os.geteuid() == 0:
        account.home.chmod(0o700)  # useradd's HOME_MODE may be wider
    for root in extra_roots:
        _mirror_account(account, settings.group, Path(root))
    return account


def remove_account(hub_name: str, settings: UnixAccounts) -> bool:
    """Delete the hub user's facility account and its home (root only); False if there was none.

    Only an account this module created (lookup refuses others). Its processes must have ended.
    """
    account = lookup(hub_name, settings)
    if account is None:
        return False
    require_root(f"cannot remove the Unix account of {hub_name!r}")
    _run_locked(["userdel", "--remove", account.name])
    return True


def require_root(what: str) -> None:
    """Refuse clearly when per-user accounts are asked of a facility that does not run as root."""
    if os.geteuid() != 0:
        raise AccountError(
            f"{what}: per-user Unix accounts (auth.unix_accounts.mode: per-user, the default) need the "
            "facility to run as root; set auth.unix_accounts.mode: shared in facility.yaml for a "
            "one-person facility"
        )


def ensure_group(group: str) -> int:
    """The gid of the facility group, created if missing (root only)."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        require_root(f"cannot create the Unix group {group!r}")
    _ensure_group(group)
    return grp.getgrnam(group).gr_gid


def _ensure_group(group: str, root: Path | None = None, gid: int | None = None) -> None:
    root_args = ["--root", str(root)] if root else []
    if root is None:
        if _group_exists(group):
            return
    else:
        entry = _entry(root / "etc" / "group", group)
        if entry is not None:
            if gid is not None and entry[2] != str(gid):
                # A host group re-created with another gid: the chroot's copy follows it.
                _run_locked(["groupmod", *root_args, "--gid", str(gid), group])
            return
    gid_args = ["--gid", str(gid)] if gid is not None else []
    try:
        _run_locked(["groupadd", *root_args, *gid_args, group])
    except AccountError:
        # Another process (the hub, a gateway) may have added it meanwhile.
        exists = _entry(root / "etc" / "group", group) is not None if root else _group_exists(group)
        if not exists:
            raise


def _group_exists(group: str) -> bool:
    try:
        grp.getgrnam(group)
        return True
    except KeyError:
        return False


def _entry(table: Path, name: str) -> list[str] | None:
    """The fields of `name`'s line in an /etc/passwd- or /etc/group-style file, or None."""
    for line in table.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def _mirror_account(account: Account, facility_group: str, root: Path) -> None:
    _ensure_group(facility_group, root, grp.getgrnam(facility_group).gr_gid)
    _ensure_group(account.name, root, account.gid)
    entry = _entry(root / "etc" / "passwd", account.name)
    if entry is None:
        _run_locked(
            ["useradd", "--root", str(root), "--uid", str(account.uid), "--gid", str(account.gid)]
            + ["--no-create-home", "--home-dir", str(account.home), "--shell", "/bin/bash"]
            + ["--groups", facility_group, "--comment", f"{GECOS_MARKER} {account.hub_name}", account.name]
        )
    elif entry[2:4] != [str(account.uid), str(account.gid)]:
        # The host account was re-created with other ids since it was mirrored: follow the host.
        _run_locked(
            ["usermod", "--root", str(root), "--uid", str(account.uid), "--gid", str(account.gid), account.name]
        )


def _run_locked(argv: list[str], attempts: int = 20) -> None:
    """Run useradd/groupadd, retrying while another process holds the password-file lock."""
    for _ in range(attempts):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - no shell
        if result.returncode == 0:
            return
        if result.returncode != USERADD_BUSY:
            raise AccountError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
        time.sleep(0.25)
    raise AccountError(f"{argv[0]}: the password files stayed locked")


def grant_traverse(paths: Iterable[Path], group: str) -> list[Path]:
    """Let members of `group` pass through (not list) every folder above and at each path.

    Needed when the project or the state folder lie below a private folder (a CI clone in a 0700
    temporary folder). An ACL entry for the facility group only (setfacl, package acl), never o+x
    for everyone; never on a home folder (facility.home_folders: HomeFolderError instead). Returns
    the folders that got an entry.
    """
    closed: dict[Path, Path] = {}  # folder -> the needed path it lies above
    for path in paths:
        path = Path(path).resolve()
        for folder in [path, *path.parents]:
            if folder not in closed and folder.is_dir() and not folder.stat().st_mode & 0o001:
                closed[folder] = path  # others may not pass through yet
    homes = home_folders()
    for folder, path in closed.items():  # all refusals before any grant
        refuse_home(folder, path, homes)
    for folder in closed:
        subprocess.run(["setfacl", "--modify", f"g:{group}:x", str(folder)], check=True)  # noqa: S603, S607
    return list(closed)
