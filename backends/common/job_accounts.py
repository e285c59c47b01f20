"""Which Unix account a user's batch jobs (Slurm, HTCondor) are submitted, run and cancelled as.

With ``auth.unix_accounts.mode: per-user`` the hub's batch spawners and the Slurm and HTCondor
dask-gateways submit, query and cancel a user's jobs as the user's own account
(facility.accounts), so the scheduler runs the jobs as that account. In ``shared`` mode None is
returned and everything runs as the facility's own user.

Commands run as the account through argv prefixes, never a shell: setpriv from util-linux
(Account.setpriv_argv) on this host, chroot(8) into a batch system's chroot (the HTCondor kind).
No sudo: the hub and the gateways run as root.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from facility.accounts import Account, ensure_account
from facility.model import Facility


def job_account(fac: Facility, hub_name: str, chroots: Sequence[Path] = ()) -> Account | None:
    """The account `hub_name`'s jobs run as, created on first use (also in `chroots`); None in shared mode."""
    settings = fac.auth.unix_accounts
    if not settings.per_user:
        return None
    return ensure_account(hub_name, settings, extra_roots=chroots)
