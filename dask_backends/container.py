"""The command a batch job (notebook server, Dask scheduler or worker, papermill run) executes.

Shared by the Slurm and HTCondor backends and by batchspawner's submit scripts: where the backend
runs jobs in a container (`container_runtime: apptainer`) and the image has a CVMFS path, the
command runs as `apptainer exec <cvmfs path> ...`; otherwise it runs in the configured environment
(`site.environment`, a Python environment prefix, or whatever is on the job's PATH).

Every argument is quoted with shlex, so nothing from a user or a form reaches the shell unquoted.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dask_backends.data import data_environment
from facility import cvmfs
from facility.model import Backend, Facility, Image

APPTAINER = "apptainer"


def image_path(fac: Facility, image: Image) -> str:
    """Where the unpacked image lives on CVMFS (facility.cvmfs); not checked here: the batch
    nodes mount CVMFS, the hub host need not."""
    return str(cvmfs.image_path(fac, image, check=False))


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


def job_wrapping(fac: Facility, backend: Backend, image: Image, gpus: int = 0) -> JobWrapping:
    """The wrapping of jobs on this backend with this image.

    site keys read: `apptainer` (the runtime's program, default "apptainer"), `apptainer_binds`
    (host paths bound into the container), `environment` (prefix of the Python environment jobs
    use when no container runs: its bin/ programs are called by full path).
    """
    site = backend.site or {}
    if uses_container(backend):
        command = [str(site.get("apptainer", APPTAINER)), "exec"]
        if gpus:
            command.append("--nv")  # binds the host's NVIDIA driver and devices
        for bind in site.get("apptainer_binds", ()) or ():
            command += ["--bind", str(bind)]
        return JobWrapping(prefix=(*command, image_path(fac, image)))
    environment = site.get("environment")
    return JobWrapping(program_dir=os.path.join(str(environment), "bin") if environment else "")


def job_argv(fac: Facility, backend: Backend, image: Image, argv: Sequence[str], gpus: int = 0) -> list[str]:
    """The argv a job runs for `argv` on this backend with this image (see job_wrapping)."""
    return job_wrapping(fac, backend, image, gpus).apply(argv)


def job_command(fac: Facility, backend: Backend, image: Image, argv: Sequence[str], gpus: int = 0) -> str:
    """job_argv as one shell line, each argument quoted."""
    return shlex.join(job_argv(fac, backend, image, argv, gpus))


def export_lines(environment: Mapping[str, str]) -> str:
    """`export KEY=value` lines for a batch script, values quoted; keys must be shell names."""
    lines = []
    for key, value in environment.items():
        if not key.isidentifier():
            raise ValueError(f"{key!r} is not a valid environment variable name")
        lines.append(f"export {key}={shlex.quote(str(value))}")
    return "\n".join(lines)


def data_cache_environment(fac: Facility, backend: Backend) -> dict[str, str]:
    """Where jobs of this backend read data ($AF_DATA_*): dask_backends.data's answer, which
    prefers the running facility's URLs (runtime.json named by $AF_RUNTIME) to facility.yaml's."""
    return data_environment(fac, backend)
