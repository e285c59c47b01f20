"""dask-gateway's jobqueue launcher, run as the user's own Unix account or the gateway's own user.

Upstream runs `sudo -nHu <user> dask-gateway-jobqueue-launcher`. Here the gateway runs as root
and switches with setpriv (util-linux) to the user's account in per-user mode
(backends.common.job_accounts), so the launcher writes the staging folder (TLS key and certificate) as that
account and submits as it; in shared mode it runs as the gateway's own user, as before.
The Slurm and HTCondor gateway backends both call this from their `do_as_user`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from facility.accounts import Account, grant_traverse
from facility.model import Facility


async def run_launcher(action: str, payload: dict[str, Any], account: Account | None = None) -> tuple[int, str, str]:
    """Run one launcher action (start / stop); returns the command's (returncode, stdout, stderr)."""
    run_as = account.setpriv_argv() if account is not None else []
    home = str(account.home) if account is not None else os.environ.get("HOME", "/")
    proc = await asyncio.create_subprocess_exec(
        *run_as,
        sys.executable,
        "-m",
        "dask_gateway_server.backends.jobqueue.launcher",
        # The launcher starts the batch command in $HOME: the account's own home.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate(json.dumps({**payload, "action": action}).encode())
    out, err = stdout.decode("utf8", "replace"), stderr.decode("utf8", "replace")
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"dask-gateway-jobqueue-launcher exited {proc.returncode}: {err or out}")
    result = json.loads(out)
    if not result["ok"]:
        raise RuntimeError(result["error"])
    return result["returncode"], result["stdout"], result["stderr"]


def user_folder(root: str | os.PathLike[str], username: str, *below: str) -> Path:
    """`root/username/below...`: one user's folder under a shared root, the name checked first."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]*", username):
        raise ValueError(f"username {username!r} cannot name a folder")
    return Path(root, username, *below)


def user_staging_root(staging_root: str | os.PathLike[str], folder: str, account: Account | None) -> Path:
    """`staging_root/folder`, the parent of one user's cluster staging folders.

    With an account it is created owned by the account, mode 0700, so the launcher (running as
    the account) can create cluster folders in it and no other account can look inside. Without
    one (shared mode) it is 0711: the gateway's umask is 077, and the site's job user (HTCondor's
    `htcondor_job_user`) must still pass through to the cluster folders.
    """
    path = user_folder(staging_root, folder)
    path.mkdir(parents=True, exist_ok=True)
    if account is not None:
        os.chown(path, account.uid, account.gid)
        path.chmod(0o700)
    else:
        path.chmod(0o711)
    return path


def prepare_staging_root(staging_root: str | os.PathLike[str], fac: Facility) -> None:
    """Create the gateway's staging root; in per-user mode let users' accounts pass through to it.

    The gateway runs with umask 077 below the closed state folder (af.host_access): each folder
    on the way gets the facility group's pass-through ACL entry (no listing), as `af up` does.
    """
    path = Path(staging_root)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        folder.chmod(0o711)  # pass through only: each user's or cluster's folder below is private
    if fac.auth.unix_accounts.per_user:
        grant_traverse([path], fac.auth.unix_accounts.group)
