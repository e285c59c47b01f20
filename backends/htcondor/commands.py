"""How HTCondor's command line tools run at a site: natively, in a chroot, as which account.

Every command the HTCondor kind runs (the hub's spawner, the gateway's backend, `af run`) starts
from ``condor_argv``, so the site's chroot, tool folder and job user are applied in one place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.htcondor.settings import HTCondorSettings
from facility.accounts import Account

CONDOR_TOOLS = ("condor_submit", "condor_q", "condor_rm", "condor_hold", "condor_history", "condor_status")


def _settings(site: HTCondorSettings | Mapping[str, Any] | None) -> HTCondorSettings:
    return site if isinstance(site, HTCondorSettings) else HTCondorSettings.from_site(site)


def condor_argv(
    site: HTCondorSettings | Mapping[str, Any] | None, tool: str, account: Account | None = None
) -> list[str]:
    """The argv that runs one HTCondor command line tool at this site.

    `htcondor_chroot`: its tools run through chroot(8), which needs root; `htcondor_bin`: folder of
    the tools (default: PATH, or /usr/bin inside the chroot); `htcondor_job_user`: the account jobs
    are submitted as when the facility runs as root (HTCondor never runs a job as root).
    `account`: the user's own Unix account (per-user mode); it replaces `htcondor_job_user`.
    """
    if tool not in CONDOR_TOOLS:
        raise ValueError(f"unknown HTCondor tool {tool!r}")
    site = _settings(site)
    chroot, user = site.htcondor_chroot, site.htcondor_job_user
    bin_dir = site.htcondor_bin or ("/usr/bin" if chroot else "")
    program = os.path.join(bin_dir, tool) if bin_dir else tool
    # Full paths: dask-gateway's launcher runs commands with the job's environment, without PATH.
    if chroot and account is not None:
        return chroot_argv(account, chroot, program)
    if chroot:
        return [system_program("chroot"), *([f"--userspec={user}:{user}"] if user else []), chroot, program]
    if account is not None and os.geteuid() == 0:
        setpriv, *switch = account.setpriv_argv()
        return [system_program(setpriv), *switch, program]
    if user and os.geteuid() == 0:
        return [system_program("runuser"), "-u", user, "--", program]
    return [program]


def chroot_argv(account: Account | None, chroot: str | os.PathLike[str], chroot_program: str) -> list[str]:
    """argv running `chroot_program` inside `chroot`, as `account` when given (chroot itself needs root).

    Numeric ids with the account's groups listed: the chroot holds the same uid and gid
    (facility.accounts mirrors them), so no name lookup inside the chroot can pick another account.
    """
    spec: list[str] = []
    if account is not None:
        spec = [f"--userspec={account.uid}:{account.gid}", f"--groups={','.join(map(str, account.groups()))}"]
    return [system_program("chroot"), *spec, str(chroot), chroot_program]


def system_program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def job_user_ids(site: HTCondorSettings | Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(uid, gid) of `htcondor_job_user`, looked up where the tools run (the chroot or this host)."""
    site = _settings(site)
    user = site.htcondor_job_user
    if not user:
        return None
    passwd = Path(site.htcondor_chroot, "etc/passwd") if site.htcondor_chroot else Path("/etc/passwd")
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ValueError(f"htcondor_job_user {user!r} is not a user in {passwd}")
