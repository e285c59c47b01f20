"""The command a batch job (notebook server, Dask scheduler or worker, papermill run) executes.

Shared by the Slurm and HTCondor kinds: where the backend runs jobs in a container
(`container_runtime: apptainer`) and the image has a CVMFS path, the command runs as
`apptainer exec <cvmfs path> ...`; otherwise it runs in the configured environment
(`site.environment`, a Python environment prefix, or whatever is on the job's PATH).

Every argument stays a separate argv item (quoted with shlex where a shell reads it), so nothing
from a user or a form reaches the shell unquoted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from backends.common.settings import BatchSettings
from facility import cvmfs
from facility.model import Backend, Facility, Image


def image_path(fac: Facility, image: Image) -> str:
    """Where the unpacked image lives on CVMFS (facility.cvmfs); not checked here: the batch
    nodes mount CVMFS, the hub host need not."""
    return str(cvmfs.image_path(fac, image, check=False))


# A container job's notebook server: the image's own af-singleuser (images/Containerfile installs
# the project), which loads the facility's server extensions (busy kernels, the examples pull).
IMAGE_SERVER_COMMAND = ("af-singleuser",)


def uses_container(backend: Backend) -> bool:
    return backend.container_runtime == "apptainer"


@dataclass(frozen=True)
class JobWrapping:
    """How a job's command is wrapped: a prefix (the container runtime) or a program folder (the
    environment). Plain data, so a spawner can keep it in the hub's database."""

    prefix: tuple[str, ...] = ()
    program_dir: str = ""

    def apply(self, argv: Sequence[str]) -> list[str]:
        if not argv:
            raise ValueError("a job needs a command")
        first, *rest = map(str, argv)
        if self.program_dir and "/" not in first:
            first = os.path.join(self.program_dir, first)
        return [*self.prefix, first, *rest]


def job_wrapping(
    fac: Facility, backend: Backend, image: Image, settings: BatchSettings, gpus: int = 0, environment: str = ""
) -> JobWrapping:
    """The wrapping of jobs on this backend with this image.

    site keys read: `apptainer` (the runtime's program), `apptainer_binds` (host paths bound into
    the container), and without a container `environment` (or the kind's default `environment`
    given here): its bin/ programs are called by full path.
    """
    if uses_container(backend):
        command = [settings.apptainer, "exec"]
        if gpus:
            command.append("--nv")  # binds the host's NVIDIA driver and devices
        for bind in settings.apptainer_binds:
            command += ["--bind", str(bind)]
        return JobWrapping(prefix=(*command, image_path(fac, image)))
    environment = settings.environment or environment
    return JobWrapping(program_dir=os.path.join(environment, "bin") if environment else "")
