"""Notebook servers as HTCondor jobs: batchspawner's CondorSpawner with the project's submit template.

What differs from upstream CondorSpawner:
- the submit description is templates/htcondor_notebook.sub.j2 (backends.htcondor.submit); every
  value passes submit_value (no line breaks, no $( macros), strings in ClassAd
  expressions are escaped, the command is written in HTCondor's quoted `arguments` syntax and the
  environment travels through condor_submit's own environment (`getenv` lists names only);
- in per-user mode (auth.unix_accounts) condor_submit, condor_q and condor_rm run as the user's
  own Unix account (backends.common.batch_spawner.JobAccountMixin; chroot --userspec where HTCondor lives in
  a chroot), so HTCondor runs the job as that account, in its home folder; in shared mode they
  run as the hub's user or as the site's `htcondor_job_user`. No pwd lookups of hub names;
- a job that HTCondor refuses, holds, that stays idle past `pending_timeout_seconds` or that ends
  before its server reports in fails the spawn with a message saying which, removes the job and
  leaves the hub clean for the next spawn.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from batchspawner import CondorSpawner
from traitlets import Float, Int, Unicode, default

from backends.common.batch_spawner import (
    JobAccountMixin,
    JobCommandMixin,
    WatchedStartMixin,
    account_settings,
    wrapping_traits,
)
from backends.common.container import IMAGE_SERVER_COMMAND, job_wrapping, uses_container
from backends.common.notebook_child import ChildConfig, ParentSpawner, batch_config, batch_environment, home_folder
from backends.htcondor.commands import condor_argv, job_user_ids
from backends.htcondor.settings import HTCondorSettings
from backends.htcondor.slots import count_slots, slot_constraint, status_args
from backends.htcondor.submit import (
    SubmitValueError,
    classad_string,
    condor_arguments,
    getenv_names,
    parse_submit_output,
    render_notebook_submit,
)
from facility.model import Backend, Facility
from facility.validation import SpawnRequest


class FacilityCondorSpawner(JobCommandMixin, JobAccountMixin, WatchedStartMixin, CondorSpawner):
    """CondorSpawner configured per spawn by htcondor_child below."""

    scheduler_name = "HTCondor"

    exec_prefix = Unicode("", help="Prefix of the HTCondor tools' command lines; the tools' argv is in `site`.").tag(
        config=True
    )
    site = Unicode("{}", help="The backend's facility.yaml `site` settings, as JSON.").tag(config=True)
    memory_mb = Int(1024).tag(config=True)
    walltime_seconds = Int(0).tag(config=True)
    gpus = Int(0).tag(config=True)
    accounting_group = Unicode("").tag(config=True)
    requirements = Unicode("").tag(config=True)
    notebook_host = Unicode("", help="Address the hub reaches job servers at; empty: the execute host.").tag(
        config=True
    )
    pending_timeout = Float(300, help="Seconds a job may stay idle before the spawn gives up.").tag(config=True)
    reraised_errors = ("HTCondor refused", "Cannot write")

    @property
    def site_settings(self) -> HTCondorSettings:
        return HTCondorSettings.from_site(json.loads(self.site))

    def _tool(self, name: str, *args: str) -> str:
        return shlex.join([*condor_argv(self.site_settings, name, self.account), *args])

    @default("batch_submit_cmd")
    def _default_submit_cmd(self) -> str:
        return self._tool("condor_submit", "-terse")

    @default("batch_query_cmd")
    def _default_query_cmd(self) -> str:
        # {job_id} is filled in by batchspawner; it is always cluster.proc from parse_job_id.
        return self._tool("condor_q") + " {job_id} -af:j JobStatus RemoteHost"

    @default("batch_cancel_cmd")
    def _default_cancel_cmd(self) -> str:
        return self._tool("condor_rm") + " {job_id}"

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        # No pwd lookups of hub names (upstream's UserEnvMixin): the account's own variables, if any.
        if self.account is not None:
            env.update(self.account.environment())
            return env
        env["USER"] = self.user.name
        env["HOME"] = self.job_workdir
        return env

    def parse_job_id(self, output: str) -> str:
        return parse_submit_output(output)

    def _state(self) -> tuple[int, str]:
        fields = (self.job_status or "").split()
        if len(fields) >= 2 and fields[1].isdigit():
            return int(fields[1]), (fields[2] if len(fields) > 2 else "")
        return 0, ""

    def state_ispending(self) -> bool:
        # While starting, a held job counts as waiting: _watch_job reports it with its hold reason.
        state = self._state()[0]
        return state == 1 or (state == 5 and getattr(self, "_starting", False))

    def state_isunknown(self) -> bool:
        # condor_q failed (its error is the status text), as opposed to answering "no such job".
        return bool(self.job_status.strip()) and self._state()[0] == 0

    def state_isrunning(self) -> bool:
        return self._state()[0] == 2

    def state_gethost(self) -> str:
        if self.notebook_host:
            return self.notebook_host
        return self._state()[1].rpartition("@")[2] or "127.0.0.1"

    def job_log(self, job_id: str) -> str:
        """The end of the job's output, for error messages."""
        try:
            lines = (Path(self.job_workdir) / f"notebook-{job_id.split('.')[0]}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(lines.splitlines()[-15:])

    async def _get_batch_script(self, **subvars: Any) -> str:
        # Only the spawner's own (validated) traits reach the description, never raw user_options.
        env = self.get_env()
        argv = self.server_argv()
        return render_notebook_submit(
            {
                "executable": argv[0],
                "arguments": condor_arguments(argv[1:]),
                "getenv": getenv_names(env),
                "job_dir": self.job_workdir,
                "cores": int(self.req_nprocs or 1),
                "memory_mb": self.memory_mb,
                "gpus": self.gpus,
                "accounting_group": self.accounting_group,
                "username": self.user.name,
                "username_ad": classad_string(self.user.name),
                "requirements": self.requirements,
                "walltime_seconds": self.walltime_seconds,
            }
        )

    async def submit_batch_script(self) -> str:
        workdir = Path(self.job_workdir)
        if not workdir.exists():
            workdir.parent.mkdir(parents=True, exist_ok=True)
            # The hub runs with umask 077: the job's user must still pass through to its folder.
            workdir.parent.chmod(workdir.parent.stat().st_mode | 0o011)
            workdir.mkdir(exist_ok=True)
        ids = None if self.account is not None else job_user_ids(self.site_settings)
        if ids:
            os.chown(workdir, *ids)  # the job writes its log and the server its files here
        try:
            job_id = await super().submit_batch_script()
        except SubmitValueError as exc:
            raise RuntimeError(f"Cannot write your HTCondor job: {exc}") from None
        except RuntimeError as exc:
            raise RuntimeError(f"HTCondor refused the notebook job: {exc}") from None
        return job_id

    async def _query(self, *attributes: str) -> str:
        try:
            return await self.run_command(self._tool("condor_q", self.job_id, "-af", *attributes))
        except RuntimeError:
            return ""

    async def _held_message(self, job_id: str) -> str | None:
        if self._state()[0] != 5:
            return None
        reason = await self._query("HoldReason")
        return f"HTCondor put your notebook job {job_id} on hold: {reason.strip() or 'no reason given'}."

    async def _queue_estimate(self, job_id: str) -> str:
        cores, gpus = int(self.req_nprocs or 1), self.gpus
        try:
            constraint = slot_constraint(cores, self.memory_mb, gpus, self.requirements)
            out = await self.run_command(self._tool("condor_status", *status_args(constraint)))
        except (RuntimeError, SubmitValueError):
            return "the HTCondor pool does not answer right now"
        return count_slots(out, cores, self.memory_mb, gpus).estimate().in_words()

    async def _pending_message(self, job_id: str, waited: float) -> str:
        return (
            f"Your notebook job {job_id} stayed idle in HTCondor for {waited:.0f} s: no machine in the "
            "pool matches its requirements or has the resources free. It was removed; choose fewer "
            "resources or another queue and start again."
        )

    async def _ended_message(self, job_id: str) -> str:
        log = self.job_log(job_id)
        return f"Your notebook job {job_id} left the HTCondor queue before the notebook server started." + (
            f" Last lines of its log:\n{log}" if log else ""
        )


def condor_child_config(
    fac: Facility,
    backend: Backend,
    request: SpawnRequest,
    username: str,
    home_dir_template: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """FacilityCondorSpawner traits for a validated request, on top of the common batch config.

    site keys read: see backends.htcondor.settings.HTCondorSettings.
    """
    site = HTCondorSettings.of(backend)
    image = fac.image(request.image)
    if site.job_dir:
        workdir = str(Path(site.job_dir) / "notebooks" / username)
    else:
        workdir = home_folder(home_dir_template, username)
    wrapping = job_wrapping(fac, backend, image, site, gpus=request.gpus, environment=site.job_environment)
    config.update(
        account_settings(fac, [str(p) for p in site.chroots]),
        environment=batch_environment(fac, backend, config),
        site=json.dumps(backend.site or {}),
        job_workdir=workdir,
        memory_mb=request.memory_gb * 1024,
        walltime_seconds=(request.walltime_hours or 0) * 3600,
        gpus=request.gpus,
        accounting_group=request.queue or site.htcondor_accounting_group,
        requirements=site.htcondor_requirements,
        notebook_host=site.notebook_host,
        pending_timeout=site.notebook_pending_timeout,
        **wrapping_traits(wrapping),
    )
    if uses_container(backend):
        config["cmd"] = list(IMAGE_SERVER_COMMAND)  # the image's own, not the hub host's
    return config


def htcondor_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> ChildConfig:
    config = batch_config(fac, backend, request, parent)
    name, template = parent.user.name, parent.home_dir_template
    return FacilityCondorSpawner, condor_child_config(fac, backend, request, name, template, config)
