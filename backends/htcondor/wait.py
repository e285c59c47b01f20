"""The HTCondor kind's predicted wait (backends.registry `wait`): the pool's matching slots.

The request becomes the notebook job's own values through condor_child_config, as for
FacilityCondorSpawner's submit description; backends.htcondor.slots turns them into a
condor_status constraint and counts free and claimed slots. condor_q adds how many jobs are
idle in the queue. The tools run as the site runs them (backends.htcondor.commands).
"""

from __future__ import annotations

import asyncio

from backends.common.notebook_child import batch_request_traits
from backends.common.wait import Estimate, ToolError, run_tool
from backends.htcondor.commands import condor_argv
from backends.htcondor.settings import HTCondorSettings
from backends.htcondor.slots import count_slots, idle_jobs, slot_constraint, status_args
from backends.htcondor.spawner import condor_child_config
from backends.htcondor.submit import SubmitValueError
from facility.model import Backend, Facility
from facility.validation import SpawnRequest

# condor_q's arguments listing the jobs idle in the queue, everyone's.
IDLE_JOBS = ["-allusers", "-constraint", "JobStatus == 1", "-af", "ClusterId"]


async def estimate(
    fac: Facility, backend: Backend, request: SpawnRequest, username: str, home_dir_template: str
) -> Estimate:
    """How many slots of the pool match this request's notebook job, free and claimed."""
    traits = condor_child_config(fac, backend, request, username, home_dir_template, batch_request_traits(request))
    cores, memory_mb, gpus = int(traits["req_nprocs"]), traits["memory_mb"], traits["gpus"]
    site = HTCondorSettings.of(backend)
    try:
        constraint = slot_constraint(cores, memory_mb, gpus, traits["requirements"])
    except SubmitValueError as exc:
        return Estimate("never", f"this request cannot be written as an HTCondor job: {exc}")
    try:
        status, queue = await asyncio.gather(
            run_tool("condor_status", [*condor_argv(site, "condor_status"), *status_args(constraint)]),
            run_tool("condor_q", [*condor_argv(site, "condor_q"), *IDLE_JOBS]),
        )
    except ToolError as exc:
        return Estimate("unknown", f"the HTCondor pool does not answer right now ({exc}), so no wait can be predicted")
    if status.returncode:
        reason = status.stderr.strip().splitlines()[-1] if status.stderr.strip() else "no reason given"
        return Estimate("unknown", f"the HTCondor pool does not answer right now ({reason[:200]})")
    waiting = idle_jobs(queue.stdout) if queue.returncode == 0 else None
    return count_slots(status.stdout, cores, memory_mb, gpus).estimate(waiting)
