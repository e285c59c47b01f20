"""dask-gateway's jobqueue launcher, run as the gateway's own user.

Upstream runs `sudo -nHu <user> dask-gateway-jobqueue-launcher`; the users of a single-node
facility are hub accounts with no Unix account to sudo to, so the gateway's own user submits.
The Slurm and HTCondor gateway backends both call this from their `do_as_user`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


async def run_launcher(action: str, payload: dict[str, Any]) -> tuple[int, str, str]:
    """Run one launcher action (start / stop); returns the command's (returncode, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dask_gateway_server.backends.jobqueue.launcher",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")},
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
