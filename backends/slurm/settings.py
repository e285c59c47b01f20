"""`site` of Slurm backends (docs/facility-yaml.md#site-of-slurm-backends)."""

from __future__ import annotations

from dataclasses import dataclass

from backends.common.settings import BatchSettings


@dataclass(frozen=True)
class SlurmSettings(BatchSettings):
    slurm_conf: str = ""  # SLURM_CONF of every Slurm command; empty: Slurm's default
    account: str = ""
    qos: str = ""
    sbatch_options: tuple[str, ...] = ()  # extra #SBATCH options, plain option text only
    dask_partition: str = ""  # empty: the backend's first queue
    dask_gpu_partition: str = ""
    dask_gpu_type: str = ""

    def slurm_env(self) -> dict[str, str]:
        """The environment every Slurm command needs on top of its own: the site's SLURM_CONF."""
        return {"SLURM_CONF": self.slurm_conf} if self.slurm_conf else {}
