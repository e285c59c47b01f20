"""What the HTCondor pool says about a request: the slots that match it, free or claimed.

HTCondor gives no start time; what it can say is whether a slot that fits the notebook job is
free now. The constraint is built from the same values as the job's submit description
(request_cpus, request_memory, request_gpus, the site's requirements), and `condor_status`
lists the slots it matches. A partitionable slot counts once per job of this size its unclaimed
resources still hold. Used for the spawn form (backends/htcondor/wait.py) and the spawn
progress of an idle notebook job (backends/htcondor/spawner.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.common.wait import Estimate
from backends.htcondor.submit import submit_value

# condor_status -af columns, in this order.
SLOT_ATTRIBUTES = ("SlotType", "State", "Cpus", "Memory", "GPUs")


def slot_constraint(cores: int, memory_mb: int, gpus: int, requirements: str = "") -> str:
    """Slots whose whole size fits the request (taken or not); the site's job requirements too."""
    terms = [
        f"(TotalSlotCpus ?: Cpus) >= {int(cores)}",
        f"(TotalSlotMemory ?: Memory) >= {int(memory_mb)}",
    ]
    if gpus:
        terms.append(f"(TotalSlotGPUs ?: GPUs ?: 0) >= {int(gpus)}")
    if requirements:
        terms.append(f"({submit_value(requirements)})")
    return " && ".join(terms)


def status_args(constraint: str) -> list[str]:
    """condor_status's arguments after the tool itself."""
    return ["-constraint", constraint, "-af", *SLOT_ATTRIBUTES]


@dataclass(frozen=True)
class SlotCount:
    free: int  # jobs of this size that could start now
    claimed: int  # matching slots busy with other work
    machines: int  # slots listed (each partitionable slot once)

    def estimate(self, idle_jobs: int | None = None) -> Estimate:
        queue = (f"{idle_jobs} job{'s' if idle_jobs != 1 else ''} idle in the queue",) if idle_jobs else ()
        if self.free:
            slots = "slot" if self.free == 1 else "slots"
            return Estimate("now", f"starts now: {self.free} matching {slots} free", queue, 0)
        if self.claimed:
            claimed = f"{self.claimed} matching slot{'s are' if self.claimed != 1 else ' is'} claimed"
            return Estimate("wait", f"no matching slot free: {claimed}; HTCondor gives no start time", queue)
        return Estimate("never", "no slot in the HTCondor pool is large enough for this request")


def _number(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:  # `undefined` (a slot without GPUs)
        return 0


def count_slots(status_output: str, cores: int, memory_mb: int, gpus: int) -> SlotCount:
    """Free and claimed matching slots from `condor_status ... -af SlotType State Cpus Memory GPUs`."""
    free = claimed = machines = 0
    for line in status_output.splitlines():
        fields = line.split()
        if len(fields) != len(SLOT_ATTRIBUTES):
            continue
        slot_type, state = fields[0], fields[1]
        cpus, memory, slot_gpus = (_number(v) for v in fields[2:])
        if slot_type == "Dynamic":  # carved out of a partitionable slot: work that holds its resources
            claimed += 1
            continue
        machines += 1
        fits = min(cpus // max(cores, 1), memory // max(memory_mb, 1), slot_gpus // gpus if gpus else cpus)
        if slot_type == "Partitionable":
            free += max(0, fits)
        elif state == "Unclaimed" and fits > 0:
            free += 1
        else:
            claimed += 1
    return SlotCount(free, claimed, machines)


def idle_jobs(queue_output: str) -> int:
    """Jobs listed by `condor_q -allusers -constraint JobStatus==1 -af ClusterId`."""
    return sum(1 for line in queue_output.splitlines() if line.strip())
