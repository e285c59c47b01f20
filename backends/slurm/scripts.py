"""The Slurm dialect: every script this project hands to sbatch, one renderer per role.

- notebook server (batchspawner): ``render_notebook_script``, templates/slurm_notebook.sh.j2
- `af run` papermill job: ``render_run_script``, templates/slurm_run.sh.j2
- Dask scheduler and Dask worker (dask-gateway): ``render_dask_script``; their #SBATCH options
  travel on sbatch's command line, as dask-gateway's SlurmBackend writes them, plus
  ``dask_job_options``.

The notebook and run scripts share one #SBATCH header (templates/slurm_job.sh.j2); every value
on an #SBATCH line passes ``directive``, and commands are one shlex-quoted line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from backends.common.container import JobWrapping, job_wrapping
from backends.common.gres import gpu_gres
from backends.slurm.settings import SlurmSettings
from facility.model import Backend, Facility, Image

# What may stand on an #SBATCH line: names, numbers, paths, gres and time specs. No blanks,
# quotes, newlines or shell characters; anything else is refused, not escaped.
DIRECTIVE = re.compile(r"^[A-Za-z0-9_.:=,/%+-]{1,256}$")


class BatchScriptError(ValueError):
    """A value that may not be written into a batch script."""


def directive(value: Any) -> str:
    text = str(value)
    if not DIRECTIVE.match(text):
        raise BatchScriptError(
            f"{text[:60]!r} may not be written on an #SBATCH line (only letters, digits and ._:=,/%+-)"
        )
    return text


# Shell text, not HTML: safety comes from the `directive` filter and shlex, not from escaping.
_templates = Environment(  # noqa: S701
    loader=PackageLoader("backends.slurm", "templates"), undefined=StrictUndefined, keep_trailing_newline=True
)
_templates.filters["directive"] = directive


def render_notebook_script(values: dict[str, Any]) -> str:
    """The batch script of a notebook server; `values['command']` must already be shell-quoted."""
    return _templates.get_template("slurm_notebook.sh.j2").render(**values)


# The notebook spawner's traits that fill the notebook script's #SBATCH lines (template name: trait).
NOTEBOOK_TRAITS = {
    "workdir": "job_workdir",
    "nprocs": "req_nprocs",
    "memory": "req_memory",
    "runtime": "req_runtime",
    "partition": "req_partition",
    "account": "req_account",
    "gres": "req_gres",
    "site_options": "site_options",
}


def notebook_script(traits: Mapping[str, Any], job_name: str, log_file: str, command: str) -> str:
    """The notebook job's script from the spawner's traits (FacilitySlurmSpawner's, or the same
    traits built for `sbatch --test-only` by backends/slurm/wait.py)."""
    values = {name: traits[trait] for name, trait in NOTEBOOK_TRAITS.items()}
    return render_notebook_script({**values, "job_name": job_name, "log_file": log_file, "command": command})


def render_run_script(values: dict[str, Any]) -> str:
    """The batch script of an `af run` papermill job; `values['command']` must already be shell-quoted."""
    return _templates.get_template("slurm_run.sh.j2").render(**values)


def render_dask_script(setup: str, command: Sequence[str]) -> str:
    """The batch script of a Dask scheduler or worker job: the cluster's setup, then its command."""
    return "\n".join(["#!/bin/sh", setup, f"exec {shlex.join(command)}", ""])


def dask_job_options(
    settings: SlurmSettings, qos: str, account: str, gpus: int, gpu_type: str, job_name: str
) -> tuple[list[str], list[str]]:
    """sbatch options of a Dask job beyond dask-gateway's own: (before its options, after them).

    Later options win in sbatch: GPU workers go to the GPU partition where the site has one.
    """
    early = [f"--qos={settings.qos}"] if settings.qos and not qos else []
    if settings.account and not account:
        early.append(f"--account={settings.account}")
    if gpus:
        early.append(f"--gres={gpu_gres(gpus, gpu_type)}")
    early += list(settings.sbatch_options)
    late = [f"--partition={settings.dask_gpu_partition}"] if gpus and settings.dask_gpu_partition else []
    late.append(f"--job-name={job_name}")
    return early, late


def slurm_wrapping(fac: Facility, backend: Backend, image: Image, gpus: int = 0) -> JobWrapping:
    """How Slurm jobs of this backend run their command (apptainer or the site's environment)."""
    return job_wrapping(fac, backend, image, SlurmSettings.of(backend), gpus)


def job_argv(fac: Facility, backend: Backend, image: Image, argv: Sequence[str], gpus: int = 0) -> list[str]:
    """The argv a Slurm job runs for `argv` on this backend with this image."""
    return slurm_wrapping(fac, backend, image, gpus).apply(argv)


def job_command(fac: Facility, backend: Backend, image: Image, argv: Sequence[str], gpus: int = 0) -> str:
    """job_argv as one shell line, each argument quoted."""
    return shlex.join(job_argv(fac, backend, image, argv, gpus))
