"""The Slurm kind's predicted wait (backends.registry `wait`): what Slurm itself says about the
notebook job a request would submit.

The job is the spawner's own: its traits come from slurm_child_config and its script from
scripts.notebook_script, exactly as FacilitySlurmSpawner would submit it; `sbatch --test-only`
then tells when Slurm would start it, without queueing anything. Free GPUs per type come from
sinfo's Gres/GresUsed columns of the chosen partition. Commands run as the user's account when
it exists (per-user mode), else as the hub's user, with the site's SLURM_CONF.
"""

from __future__ import annotations

import asyncio

from backends.common.notebook_child import batch_request_traits
from backends.common.wait import Estimate, ToolError, run_tool
from backends.slurm.queue import (
    SINFO_GPUS,
    closed_partition,
    failure_estimate,
    free_gpus,
    gpu_details,
    partition_state,
    test_only_estimate,
)
from backends.slurm.scripts import BatchScriptError, notebook_script
from backends.slurm.settings import SlurmSettings
from backends.slurm.spawner import slurm_child_config
from facility.accounts import AccountError, lookup
from facility.model import Backend, Facility
from facility.validation import SpawnRequest


async def estimate(
    fac: Facility, backend: Backend, request: SpawnRequest, username: str, home_dir_template: str
) -> Estimate:
    """When Slurm would start this request's notebook job, and which GPUs are free."""
    traits = slurm_child_config(fac, backend, request, username, home_dir_template, batch_request_traits(request))
    prefix = _account_prefix(fac, username)
    env = SlurmSettings.of(backend).slurm_env()
    try:
        script = notebook_script(traits, f"jupyter-{username}", "/dev/null", "true")
    except BatchScriptError as exc:
        return Estimate("never", f"this request cannot be written as a Slurm job: {exc}")
    try:
        prediction, gpus = await asyncio.gather(
            _predicted_start(prefix, env, script, request.queue),
            _gpu_details(prefix, env, request) if backend.has_gpus else _no_details(),
        )
    except ToolError as exc:
        return Estimate("unknown", f"Slurm does not answer right now ({exc}), so no wait can be predicted")
    return Estimate(prediction.state, prediction.summary, prediction.details + gpus, prediction.seconds)


async def _predicted_start(prefix: list[str], env: dict[str, str], script: str, partition: str) -> Estimate:
    if partition:
        shown = await run_tool("scontrol", [*prefix, "scontrol", "-o", "show", "partition", partition], env=env)
        if shown.returncode:
            return failure_estimate(shown.stderr)
        state = partition_state(shown.stdout)
        if state and state != "UP":
            # --test-only still answers for a closed partition, with a start time that will not hold.
            return closed_partition(partition, state)
    tested = await run_tool("sbatch", [*prefix, "sbatch", "--test-only"], stdin=script, env=env)
    return test_only_estimate(tested.returncode, tested.stderr)


async def _gpu_details(prefix: list[str], env: dict[str, str], request: SpawnRequest) -> tuple[str, ...]:
    where = ["-p", request.queue] if request.queue else []
    listed = await run_tool("sinfo", [*prefix, "sinfo", "-h", "-N", *where, "-O", SINFO_GPUS], env=env)
    if listed.returncode:
        return ("free GPUs unknown: sinfo failed",)
    return gpu_details(free_gpus(listed.stdout), request.gpus, request.gpu_type)


async def _no_details() -> tuple[str, ...]:
    return ()


def _account_prefix(fac: Facility, username: str) -> list[str]:
    """setpriv to the user's own account in per-user mode, when it exists already."""
    if not fac.auth.unix_accounts.per_user:
        return []
    try:
        account = lookup(username, fac.auth.unix_accounts)
    except AccountError:
        return []
    return account.setpriv_argv() if account is not None else []
