"""Slurm's generic-resource request for GPUs: the Slurm kind's jobs and interLink's Slurm plugin."""

from __future__ import annotations


def gpu_gres(gpus: int, gpu_type: str = "") -> str:
    """`gpu[:TYPE]:N`, or "" without GPUs."""
    if not gpus:
        return ""
    return f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}"
