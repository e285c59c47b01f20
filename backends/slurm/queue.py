"""What Slurm says about when a job would start: the parsers of `sbatch --test-only`, `squeue %S`,
`scontrol show partition` and `sinfo` GPU columns, and their meaning in plain words.

Used for the spawn form's prediction (backends/slurm/wait.py) and for the spawn progress of a
pending notebook job (backends/slurm/spawner.py).
"""

from __future__ import annotations

import re
from datetime import datetime

from backends.common.gres import gpu_counts
from backends.common.wait import Estimate, wait_words

# sbatch: Job 3 to start at 2026-12-06T14:15:13 using 2 processors on nodes afnode in partition cpu
_TEST_ONLY = re.compile(r"Job \d+ to start at (\S+) using \d+ processors on nodes (\S+)")
# Within this, Slurm's prediction counts as "at once" (its scheduler runs every few seconds).
AT_ONCE_SECONDS = 60
NO_NODE_FITS = "Requested node configuration is not available"
CONTROLLER_DOWN = ("Unable to contact slurm controller", "Socket timed out", "Connection refused")


def slurm_time(text: str) -> datetime | None:
    """A Slurm timestamp (local time, as the client prints it), or None for N/A, Unknown and the like."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def seconds_until(start: datetime, now: datetime | None = None) -> int:
    return max(0, int((start - (now or datetime.now())).total_seconds()))


def test_only_estimate(returncode: int, stderr: str, now: datetime | None = None) -> Estimate:
    """The Estimate from `sbatch --test-only`'s exit status and output (it answers on stderr)."""
    match = _TEST_ONLY.search(stderr)
    if returncode == 0 and match:
        start = slurm_time(match.group(1))
        if start is not None:
            return start_estimate(start, now, where=match.group(2))
    return failure_estimate(stderr)


def start_estimate(start: datetime, now: datetime | None = None, where: str = "") -> Estimate:
    seconds = seconds_until(start, now)
    if seconds <= AT_ONCE_SECONDS:
        return Estimate("now", "starts now: Slurm would start it at once" + (f" (on {where})" if where else ""), (), 0)
    return Estimate(
        "wait", f"expected to start in {wait_words(seconds)} (Slurm estimate, at {start:%H:%M})", (), seconds
    )


def failure_estimate(stderr: str) -> Estimate:
    """What a failed Slurm command means for the user, in one sentence without Slurm's prefixes."""
    text = " ".join(line.split("error:", 1)[-1].strip() for line in stderr.strip().splitlines() if line.strip())
    if NO_NODE_FITS in stderr:
        return Estimate("never", f"Slurm cannot run this request: no node of this partition has it ({NO_NODE_FITS})")
    if any(sign in stderr for sign in CONTROLLER_DOWN):
        return Estimate("unknown", "Slurm's controller does not answer right now, so no wait can be predicted")
    return Estimate("unknown", f"Slurm could not predict the wait: {text[:200] or 'no reason given'}")


def partition_state(scontrol_output: str) -> str:
    """State=... of `scontrol -o show partition NAME` (UP, DOWN, DRAIN, INACTIVE), "" if absent."""
    match = re.search(r"\bState=(\S+)", scontrol_output)
    return match.group(1) if match else ""


def closed_partition(partition: str, state: str) -> Estimate:
    return Estimate(
        "never", f"partition {partition} is closed ({state}): a job sent there waits until the site opens it"
    )


# sinfo's columns for free GPUs: one line per node, "|" between fields, no width limit.
SINFO_GPUS = "NodeList:0|,Gres:0|,GresUsed:0|,StateLong:0"
# Nodes whose GPUs can be handed out now (sinfo's long state names, lower case; a trailing * or ~
# marks a node that does not respond or is powered down).
_USABLE_NODES = ("idle", "mixed", "allocated", "completing")


def free_gpus(sinfo_output: str) -> dict[str, tuple[int, int]]:
    """GPU type -> (free, total) over the usable nodes, from `sinfo -h -N -O` with SINFO_GPUS."""
    free: dict[str, tuple[int, int]] = {}
    for line in sinfo_output.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or fields[3].strip().rstrip("*~#!%$@^-") not in _USABLE_NODES:
            continue
        total, used = gpu_counts(fields[1]), gpu_counts(fields[2])
        for gpu_type, count in total.items():
            had_free, had_total = free.get(gpu_type, (0, 0))
            free[gpu_type] = (had_free + max(0, count - used.get(gpu_type, 0)), had_total + count)
    return free


def gpu_details(free: dict[str, tuple[int, int]], wanted: int, wanted_type: str) -> tuple[str, ...]:
    """`GPUs free now: a100 1 of 2` and, when the request cannot have its GPUs now, why not."""
    if not free:
        return ("no GPU in this partition",) if wanted else ()
    lines = ["GPUs free now: " + ", ".join(f"{t} {n} of {total}" for t, (n, total) in sorted(free.items()))]
    if wanted:
        have = free.get(wanted_type, (0, 0))[0] if wanted_type else sum(n for n, _ in free.values())
        named = f"GPU of type {wanted_type}" if wanted_type else "GPU"
        if have == 0:
            lines.append(f"no {named} free")
        elif have < wanted:
            lines.append(f"only {have} {named}{'s' if have > 1 else ''} free, you ask for {wanted}")
    return tuple(lines)


def pending_words(squeue_line: str, now: datetime | None = None) -> str:
    """The pending job's expected start and reason from `squeue -h -j ID -o %S|%r`, in words."""
    start_text, _, reason = squeue_line.strip().partition("|")
    start = slurm_time(start_text)
    why = f" (Slurm's reason: {reason.strip()})" if reason.strip() else ""
    if start is None:
        return f"Slurm gives no expected start yet{why}"
    seconds = seconds_until(start, now)
    if seconds <= AT_ONCE_SECONDS:
        return f"Slurm expects it to start now{why}"
    return f"expected to start in {wait_words(seconds)} (Slurm estimate, at {start:%H:%M}){why}"
