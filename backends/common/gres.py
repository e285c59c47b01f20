"""Slurm's generic resources for GPUs: the request (the Slurm kind's jobs, interLink's Slurm plugin) and
the counts sinfo reports (the Slurm kind's predicted wait)."""

from __future__ import annotations

import re


def gpu_gres(gpus: int, gpu_type: str = "") -> str:
    """`gpu[:TYPE]:N`, or "" without GPUs."""
    if not gpus:
        return ""
    return f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}"


def gpu_counts(gres: str) -> dict[str, int]:
    """GPU type -> count from Slurm's Gres or GresUsed text, e.g. `gpu:a100:2(S:0-1),gpu:v100:1(IDX:0)`.

    Untyped GPUs (`gpu:2`) count under the type "any"; other resources (`shard`, `mps`) are skipped.
    """
    counts: dict[str, int] = {}
    for item in re.split(r",(?![^(]*\))", gres or ""):
        parts = re.sub(r"\(.*?\)", "", item).strip().split(":")
        if parts[0] != "gpu" or len(parts) < 2 or not parts[-1].isdigit():
            continue
        gpu_type = parts[1] if len(parts) > 2 else "any"
        counts[gpu_type] = counts.get(gpu_type, 0) + int(parts[-1])
    return counts
