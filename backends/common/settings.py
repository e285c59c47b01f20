"""`site` keys every batch kind (Slurm, HTCondor) reads: the job command and the job's folder."""

from __future__ import annotations

from dataclasses import dataclass

from facility.settings import SiteSettings

# A notebook job still waiting after this long fails the spawn, unless the site says otherwise.
NOTEBOOK_PENDING_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class BatchSettings(SiteSettings):
    apptainer: str = "apptainer"  # the container runtime's program (container_runtime: apptainer)
    apptainer_binds: tuple[str, ...] = ()  # host paths bound into the container (either runtime)
    bubblewrap: str = "bwrap"  # the program when container_runtime: bubblewrap
    environment: str = ""  # prefix of the Python environment jobs use without a container
    job_dir: str = ""  # shared folder of job folders; empty: the kind's default
    notebook_host: str = ""  # the address the hub reaches notebook jobs at; empty: the job's host
    # Notebook jobs: seconds in the queue before the spawn gives up (unset: 300). Dask jobs on
    # HTCondor: idle this long are removed (unset: never).
    pending_timeout_seconds: int | None = None

    @property
    def notebook_pending_timeout(self) -> float:
        if self.pending_timeout_seconds is None:
            return float(NOTEBOOK_PENDING_TIMEOUT_SECONDS)
        return float(self.pending_timeout_seconds)
