"""Notebook servers as Slurm jobs: batchspawner's SlurmSpawner with the project's own batch script.

What differs from upstream SlurmSpawner:
- the script is templates/slurm_notebook.sh.j2 (backends.slurm.scripts); values on #SBATCH lines
  must be plain names and numbers, the command is shlex-quoted (container wrapping from
  backends.common.container);
- in per-user mode (auth.unix_accounts) sbatch, squeue, scontrol and scancel run as the user's
  own Unix account (setpriv, backends.common.batch_spawner.JobAccountMixin), so Slurm runs the job as that
  account, in its home folder; in shared mode they run as the hub's own user. Either way with
  the site's SLURM_CONF and without pwd lookups of hub names;
- a job that Slurm refuses, that stays pending past `pending_timeout` or that ends before its
  server reports in fails the spawn with a message saying which, cancels the job and leaves the
  hub clean for the next spawn.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from batchspawner import SlurmSpawner
from traitlets import Float, List, Unicode

from backends.common.batch_spawner import (
    JobAccountMixin,
    JobCommandMixin,
    WatchedStartMixin,
    account_settings,
    wrapping_traits,
)
from backends.common.container import IMAGE_SERVER_COMMAND, uses_container
from backends.common.gres import gpu_gres
from backends.common.notebook_child import ChildConfig, ParentSpawner, batch_config, batch_environment, home_folder
from backends.slurm.queue import pending_words
from backends.slurm.scripts import NOTEBOOK_TRAITS, BatchScriptError, notebook_script, slurm_wrapping
from backends.slurm.settings import SlurmSettings
from facility.model import Backend, Facility
from facility.validation import SpawnRequest


class FacilitySlurmSpawner(JobCommandMixin, JobAccountMixin, WatchedStartMixin, SlurmSpawner):
    """SlurmSpawner configured per spawn by slurm_child below."""

    scheduler_name = "Slurm"

    exec_prefix = Unicode(
        "", help="Prefix of sbatch/squeue/scancel (SLURM_CONF); per-user mode runs the whole line as the account."
    ).tag(config=True)
    req_srun = Unicode("").tag(config=True)  # the server runs in the batch step; scancel ends it
    listen_ip = Unicode("", help="Address the server listens on; empty keeps batchspawner's 0.0.0.0.").tag(config=True)
    site_options = List(Unicode(), help="Extra #SBATCH options from facility.yaml's site settings.").tag(config=True)
    pending_timeout = Float(300, help="Seconds a job may stay pending before the spawn gives up.").tag(config=True)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        # No pwd lookups of hub names (upstream's UserEnvMixin): the account's own variables, if any.
        if self.account is not None:
            env.update(self.account.environment())
        else:
            env["USER"] = self.user.name
        return env

    async def run_command(self, cmd: str, input: str | None = None, env: dict[str, str] | None = None) -> str:  # noqa: A002
        # Every Slurm command (submit, query, cancel, the messages' lookups) as the job's owner.
        if self.account is not None:
            cmd = f"{shlex.join(self.account.setpriv_argv())} {cmd}"
        return await super().run_command(cmd, input=input, env=env)

    @property
    def log_file(self) -> Path:
        return Path(self.job_workdir) / "slurm-%j.log"

    def job_log(self) -> str:
        """The end of the job's output, for error messages."""
        if not self.job_id:
            return ""
        path = Path(str(self.log_file).replace("%j", self.job_id))
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-15:])

    def cmd_formatted_for_batch(self) -> str:
        return shlex.join(self.server_argv())

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.listen_ip and "JUPYTERHUB_SERVICE_URL" in env:
            url = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
            env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(url._replace(netloc=f"{self.listen_ip}:{url.port or 0}"))
        return env

    async def _get_batch_script(self, **subvars: Any) -> str:
        # Only the spawner's own (validated) traits reach the script, never raw user_options.
        traits = {trait: getattr(self, trait) for trait in NOTEBOOK_TRAITS.values()}
        return notebook_script(traits, f"jupyter-{self.user.name}", str(self.log_file), subvars["cmd"])

    async def submit_batch_script(self) -> str:
        Path(self.job_workdir).mkdir(parents=True, exist_ok=True)
        try:
            job_id = await super().submit_batch_script()
        except BatchScriptError as exc:
            raise RuntimeError(f"Cannot write your batch job: {exc}") from None
        except RuntimeError as exc:
            if "Unable to contact slurm controller" in str(exc):
                raise RuntimeError(
                    f"Slurm's controller does not answer, so your notebook job was not submitted ({exc}); "
                    "try again later or tell the facility's operators"
                ) from None
            raise RuntimeError(f"Slurm refused the notebook job: {exc}") from None
        return job_id

    async def _job_reason(self) -> str:
        try:
            out = await self.run_command(" ".join((self.exec_prefix, f"squeue -h -j {shlex.quote(self.job_id)} -o %r")))
        except RuntimeError:
            return "unknown"
        return out.strip() or "unknown"

    async def _job_end_state(self) -> str:
        try:
            out = await self.run_command(
                " ".join((self.exec_prefix, f"scontrol -o show job {shlex.quote(self.job_id)}"))
            )
        except RuntimeError:
            return "gone"
        match = re.search(r"JobState=(\S+)", out)
        reason = re.search(r"Reason=(\S+)", out)
        return f"{match.group(1) if match else 'gone'}" + (f", reason {reason.group(1)}" if reason else "")

    async def _ended_message(self, job_id: str) -> str:
        self.job_id = job_id  # for the log path; batchspawner clears it once the job is gone
        state = await self._job_end_state()
        log = self.job_log()
        return f"Your notebook job {job_id} ended before the notebook server started (Slurm state: {state})." + (
            f" Last lines of its log:\n{log}" if log else ""
        )

    async def _queue_estimate(self, job_id: str) -> str:
        try:
            out = await self.run_command(" ".join((self.exec_prefix, f"squeue -h -j {shlex.quote(job_id)} -o '%S|%r'")))
        except RuntimeError:
            return "Slurm does not answer right now, so no start time can be given"
        return pending_words(out.strip().splitlines()[0] if out.strip() else "")

    async def _pending_message(self, job_id: str, waited: float) -> str:
        reason = await self._job_reason()
        return (
            f"Your notebook job {job_id} stayed pending in Slurm for {waited:.0f} s (reason: {reason}); "
            "it was cancelled. Choose another partition or fewer resources and start again."
        )


def slurm_child_config(
    fac: Facility,
    backend: Backend,
    request: SpawnRequest,
    username: str,
    home_dir_template: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """FacilitySlurmSpawner traits for a validated request, on top of the common batch config.

    site keys read: see backends.slurm.settings.SlurmSettings.
    """
    site = SlurmSettings.of(backend)
    wrapping = slurm_wrapping(fac, backend, fac.image(request.image), gpus=request.gpus)
    slurm_env = site.slurm_env()
    config.update(
        account_settings(fac, []),
        environment=batch_environment(fac, backend, config, slurm_env),
        # batchspawner puts exec_prefix before sbatch, squeue and scancel: the same SLURM_CONF.
        exec_prefix=" ".join(["env", *(f"{k}={shlex.quote(v)}" for k, v in slurm_env.items())]) if slurm_env else "",
        req_partition=request.queue,
        req_account=site.account,
        req_gres=gpu_gres(request.gpus, request.gpu_type),
        req_options="",
        site_options=list(site.sbatch_options),
        pending_timeout=site.notebook_pending_timeout,
        **wrapping_traits(wrapping),
    )
    # The job's folder (log, working directory): the account's home in per-user mode (set when
    # the spawn starts), else site.job_dir/<user> on the shared file system, else the user's home
    # folder as the local backend lays it out.
    if site.job_dir:
        config["job_workdir"] = str(Path(site.job_dir) / username)
    else:
        config["job_workdir"] = home_folder(home_dir_template, username)
    if uses_container(backend):
        config["cmd"] = list(IMAGE_SERVER_COMMAND)  # the image's own, not the hub host's
    if site.notebook_host:
        # Single-node facilities: the hub reaches every job's server at this address.
        config["state_exechost_exp"] = site.notebook_host
        config["listen_ip"] = site.notebook_host
    return config


def slurm_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> ChildConfig:
    config = batch_config(fac, backend, request, parent)
    name, template = parent.user.name, parent.home_dir_template
    return FacilitySlurmSpawner, slurm_child_config(fac, backend, request, name, template, config)
