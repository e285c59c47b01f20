"""Which Unix account a user's batch jobs (Slurm, HTCondor) are submitted, run and cancelled as.

With ``auth.unix_accounts.mode: per-user`` the hub's batch spawners and the Slurm and HTCondor
dask-gateways submit, query and cancel a user's jobs as the user's own account (af.accounts), so
the scheduler runs the jobs as that account. In ``shared`` mode nothing changes: None is returned
and everything runs as the facility's own user, as before.

Commands run as the account through argv prefixes, never a shell: setpriv from util-linux
(Account.setpriv_argv) on this host, chroot(8) from coreutils into a batch system's chroot.
No sudo: the hub and the gateways run as root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from af.accounts import Account, ensure_account
from facility.model import Backend, Facility


def account_record(account: Account | None) -> dict[str, Any]:
    """The account as plain data, for spawner traits that the hub keeps in its database."""
    if account is None:
        return {}
    return {
        "hub_name": account.hub_name,
        "name": account.name,
        "uid": account.uid,
        "gid": account.gid,
        "home": str(account.home),
    }


def account_from_record(record: dict[str, Any]) -> Account | None:
    if not record:
        return None
    return Account(record["hub_name"], record["name"], int(record["uid"]), int(record["gid"]), Path(record["home"]))


def chroots_of(backend: Backend) -> list[Path]:
    """Chroots the backend's batch system runs in (the test HTCondor pool), which need the account too."""
    chroot = (backend.site or {}).get("htcondor_chroot") if backend.kind == "htcondor" else None
    return [Path(str(chroot))] if chroot else []


def job_account(fac: Facility, backend: Backend, hub_name: str) -> Account | None:
    """The account `hub_name`'s jobs on `backend` run as, created on first use; None in shared mode."""
    settings = fac.auth.unix_accounts
    if not settings.per_user:
        return None
    return ensure_account(hub_name, settings, extra_roots=chroots_of(backend))


def chroot_argv(account: Account | None, chroot: str | os.PathLike[str], chroot_program: str) -> list[str]:
    """argv running `chroot_program` inside `chroot`, as `account` when given (chroot itself needs root).

    Numeric ids with the account's groups listed: the chroot holds the same uid and gid
    (af.accounts mirrors them), so no name lookup inside the chroot can pick another account.
    """
    spec: list[str] = []
    if account is not None:
        groups = ",".join(str(g) for g in _groups_of(account))
        spec = [f"--userspec={account.uid}:{account.gid}", f"--groups={groups}"]
    return [shutil.which("chroot") or "/usr/sbin/chroot", *spec, str(chroot), chroot_program]


def _groups_of(account: Account) -> list[int]:
    groups = os.getgrouplist(account.name, account.gid)
    return [account.gid, *(g for g in groups if g != account.gid)]
