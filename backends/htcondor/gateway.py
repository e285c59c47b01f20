"""dask-gateway backend for HTCondor (dask-gateway ships none), in the shape of its jobqueue backends.

Like dask-gateway's Slurm and PBS backends it submits the scheduler and each worker as one job
through dask-gateway's jobqueue launcher, polls their states in bulk and removes them on stop.
In per-user mode (auth.unix_accounts) jobs are submitted and removed as the user's own Unix
account, so HTCondor runs them as it, and each user's staging folders (TLS key and certificate)
belong to that account alone; without sudo (backends.common.launcher). In shared mode the
gateway's own user (or the site's `htcondor_job_user`) submits. Schedulers and workers listen on
their node's address, not every interface (backends.common.listen_hosts). Submit descriptions come from
backends.htcondor.submit, tool command lines from backends.htcondor.commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.jobqueue.base import JobQueueBackend, JobQueueClusterConfig
from dask_gateway_server.traitlets import Type
from traitlets import Integer, Unicode

import facility
from backends.common.cluster_config import ImageAndGpusMixin
from backends.common.container import job_wrapping
from backends.common.gateway_options import cluster_options_per_user
from backends.common.job_accounts import job_account
from backends.common.launcher import prepare_staging_root, run_launcher, user_folder, user_staging_root
from backends.common.listen_hosts import NodeAddressMixin
from backends.htcondor.commands import condor_argv, job_user_ids
from backends.htcondor.settings import HTCondorSettings
from backends.htcondor.submit import (
    LIVE_STATES,
    checked_job_id,
    classad_string,
    dask_job_submit,
    parse_states,
    parse_submit_output,
)
from facility.accounts import Account, lookup
from facility.data_environment import data_environment
from facility.runtime import Runtime


class HTCondorClusterConfig(ImageAndGpusMixin, JobQueueClusterConfig):
    """Dask cluster configuration options when running on HTCondor."""

    accounting_group = Unicode("", help="HTCondor accounting group of the cluster's jobs.", config=True)

    requirements = Unicode("", help="HTCondor `requirements` expression of the cluster's jobs.", config=True)

    max_idle_seconds = Integer(
        0, help="Remove jobs still idle after this many seconds (0: never), so they cannot wait forever.", config=True
    )

    max_runtime_seconds = Integer(0, help="Remove jobs running longer than this (0: no limit).", config=True)

    extra_submit_lines = Unicode("", help="Further submit description lines, written by the operator.", config=True)


class HTCondorBackend(NodeAddressMixin, JobQueueBackend):
    """A backend for deploying Dask on an HTCondor pool."""

    cluster_config_class = Type(
        "backends.htcondor.gateway.HTCondorClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use",
        config=True,
    )

    facility_file = Unicode("", help="facility.yaml the backend's site settings come from.", config=True)
    facility_backend = Unicode("", help="Name of the htcondor backend in facility.yaml.", config=True)
    staging_root = Unicode(
        "", help="Folder of per-cluster staging folders (TLS files, logs), shared with the jobs.", config=True
    )

    @property
    def _facility(self) -> tuple[facility.Facility, facility.Backend]:
        fac = facility.current(self.facility_file or None)  # facility.loader's reload policy
        return fac, fac.backend(self.facility_backend)

    @property
    def _site(self) -> HTCondorSettings:
        return HTCondorSettings.of(self._facility[1])

    def _account(self, username: str) -> Account | None:
        """The user's Unix account in per-user mode (do_start_cluster created it); None in shared mode."""
        fac, _ = self._facility
        if not fac.auth.unix_accounts.per_user:
            return None
        account = lookup(username, fac.auth.unix_accounts)
        if account is None:
            raise RuntimeError(f"the Unix account of {username!r} does not exist")
        return account

    def _tool(self, name: str, username: str | None = None) -> list[str]:
        """A tool's argv: as `username`'s account where the launcher cannot switch to it itself."""
        site = self._site
        account = self._account(username) if username else None
        if account is None:
            return condor_argv(site, name)
        if site.htcondor_chroot:
            return condor_argv(site, name, account)  # chroot(8) needs root: the launcher stays root
        # The launcher already runs as the account (do_as_user).
        return condor_argv(dataclasses.replace(site, htcondor_job_user=""), name)

    # --- where files live: per gateway user (and their Unix account in per-user mode) ---
    def get_staging_directory(self, cluster) -> str:
        return str(user_folder(self.staging_root, cluster.username, cluster.name))

    async def do_start_cluster(self, cluster):
        fac, _ = self._facility
        # A user may create a cluster before ever starting a notebook: create the account first.
        await asyncio.to_thread(job_account, fac, cluster.username, self._site.chroots)
        async for state in super().do_start_cluster(cluster):
            yield state

    async def do_as_user(self, user, action, **kwargs):
        account = self._account(user)
        site = self._site
        if account is not None:
            user_staging_root(self.staging_root, user, account)
            if not site.htcondor_chroot:
                return await run_launcher(action, kwargs, account)
            # chroot(8) needs root: the staging folder is written (or removed) by the launcher as
            # the account, never by root inside the account's folder; then the HTCondor command
            # runs from a root launcher as `chroot --userspec=<account>` (self._tool).
            if kwargs.get("staging_dir"):
                files_only = {"cmd": ["true"], "env": {}, "staging_dir": kwargs["staging_dir"]}
                if action == "start":
                    files_only.update(stdin=None, files=kwargs.get("files"))
                await run_launcher(action, files_only, account)
                kwargs = {**kwargs, "staging_dir": None, **({"files": None} if action == "start" else {})}
            return await run_launcher(action, kwargs)
        # Shared mode: the launcher runs as root and writes the staging folder readable by root
        # only. When jobs run as `htcondor_job_user`, create the folder first, hand it over, submit.
        ids = job_user_ids(site)
        if action == "start" and kwargs.get("staging_dir") and ids:
            user_staging_root(self.staging_root, user, None)  # the job user passes through (0711)
            await run_launcher("start", {**kwargs, "cmd": ["true"], "env": {}, "stdin": None})
            _chown_tree(kwargs["staging_dir"], *ids)
            kwargs = {**kwargs, "staging_dir": None, "files": None}
        return await run_launcher(action, kwargs)

    async def stop_job(self, username, job_id, staging_dir=None):
        if staging_dir and not os.path.exists(staging_dir):
            staging_dir = None  # already cleaned up; the launcher would answer nothing
        cmd = [*self._tool("condor_rm", username), checked_job_id(job_id)]
        env: dict[str, str] = {}
        # condor_rm can fail while the schedd is busy (a loaded submit node): try again before
        # concluding; a job that already ended or left the queue is what stopping wants.
        for attempt in range(3):
            code, stdout, stderr = await self.do_as_user(
                user=username, action="stop", cmd=cmd, env=env, staging_dir=staging_dir if attempt == 0 else None
            )
            if code == 0 or "not found" in stderr + stdout:
                return
            self.log.warning("condor_rm %s failed (attempt %d): %s", job_id, attempt + 1, (stderr or stdout).strip())
            await asyncio.sleep(1 + attempt)
        with contextlib.suppress(Exception):
            if not (await self.check_jobs([job_id])).get(job_id):
                return
        raise RuntimeError(f"condor_rm {job_id} failed: {stderr or stdout}")

    async def do_stop_cluster(self, cluster):
        await super().do_stop_cluster(cluster)
        # A worker stopped while its condor_submit was in flight has a job the gateway never
        # recorded: remove whatever is left with the cluster's tag.
        constraint = f"DaskGatewayCluster == {classad_string(cluster.name)}"
        cmd = [*self._tool("condor_rm", cluster.username), "-constraint", constraint]
        code, stdout, stderr = await self.do_as_user(
            user=cluster.username, action="stop", cmd=cmd, env={}, staging_dir=None
        )
        if code != 0 and "Couldn't find" not in stdout + stderr:
            self.log.warning("Sweeping the jobs of cluster %s failed: %s", cluster.name, (stderr or stdout).strip())

    # --- the jobqueue backend interface ---
    def get_submit_cmd_env_stdin(self, cluster, worker=None):
        fac, backend = self._facility
        config = cluster.config
        staging_dir = self.get_staging_directory(cluster)
        if worker:
            argv = self.get_worker_command(cluster, worker.name)
            env = self.get_worker_env(cluster)
            cores, memory, log_name = config.worker_cores, config.worker_memory, f"dask-worker-{worker.name}.log"
            setup, role = config.worker_setup, "worker"
        else:
            argv = self.get_scheduler_command(cluster)
            env = self.get_scheduler_env(cluster)
            cores, memory, log_name = (
                config.scheduler_cores,
                config.scheduler_memory,
                f"dask-scheduler-{cluster.name}.log",
            )
            setup, role = config.scheduler_setup, "scheduler"
        # Jobs take only these variables (getenv): the data cache of the site, a home, a PATH.
        env = {
            "HOME": staging_dir,
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            **data_environment(fac, backend),
            **env,
        }
        image = next((i for i in fac.images if i.registry == config.image), fac.default_image)
        gpus = config.worker_gpus  # the scheduler's job too, as the worker GPUs reached both before
        site = self._site
        wrapping = job_wrapping(fac, backend, image, site, gpus=gpus, environment=site.job_environment)
        argv = wrapping.apply(argv)
        if setup:
            argv = ["/bin/sh", "-c", f'{setup}\nexec "$@"', "dask-gateway-job", *argv]
        log = os.path.join(staging_dir, log_name)
        policy = _policy_lines(config)
        description = dask_job_submit(
            argv, env, staging_dir, log, cores, memory, cluster.name, role, policy, config.extra_submit_lines
        )
        cmd = [*self._tool("condor_submit", cluster.username), "-terse"]
        return cmd, env, description

    def get_stop_cmd_env(self, job_id):
        return [*self._tool("condor_rm"), checked_job_id(job_id)], {}

    def get_status_cmd_env(self, job_ids):
        ids = [checked_job_id(j) for j in job_ids]
        # The gateway's own user asks about every user's jobs.
        return [*self._tool("condor_q"), "-allusers", *ids, "-af:j", "JobStatus"], {"PATH": os.environ.get("PATH", "")}

    def parse_job_states(self, stdout):
        return {job_id: status in LIVE_STATES for job_id, status in parse_states(stdout).items()}

    def parse_job_id(self, stdout):
        return parse_submit_output(stdout)


def _chown_tree(path: str, uid: int, gid: int) -> None:
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid)
            os.chmod(os.path.join(folder, name), 0o600)  # the TLS key: its owner only


def configure(c: Any, fac: facility.Facility, backend: facility.Backend, runtime: Runtime, state: Path) -> None:
    """dask-gateway-server settings of an htcondor backend (gateway/gateway_config.py calls this)."""
    site = HTCondorSettings.of(backend)
    c.DaskGateway.backend_class = HTCondorBackend
    c.Backend.cluster_options = cluster_options_per_user(fac, backend)
    c.HTCondorBackend.facility_file = runtime.facility_file
    c.HTCondorBackend.facility_backend = backend.name
    # job_dir: a folder the gateway's host and the execute nodes both see.
    c.HTCondorBackend.staging_root = os.path.join(site.job_dir or str(state), "dask-gateway", backend.name)
    prepare_staging_root(c.HTCondorBackend.staging_root, fac)
    c.HTCondorClusterConfig.accounting_group = site.htcondor_accounting_group
    c.HTCondorClusterConfig.requirements = site.htcondor_requirements
    c.HTCondorClusterConfig.max_idle_seconds = site.pending_timeout_seconds or 0  # unset: never removed
    c.HTCondorClusterConfig.max_runtime_seconds = site.htcondor_max_runtime_seconds


def _policy_lines(config: HTCondorClusterConfig) -> dict[str, str]:
    lines: dict[str, str] = {}
    if config.accounting_group:
        lines["accounting_group"] = config.accounting_group
    if config.requirements:
        lines["requirements"] = config.requirements
    remove = []
    if config.max_idle_seconds:
        remove.append(f"(JobStatus == 1 && time() - QDate > {int(config.max_idle_seconds)})")
    if config.max_runtime_seconds:
        remove.append(f"(JobStatus == 2 && time() - EnteredCurrentStatus > {int(config.max_runtime_seconds)})")
    if remove:
        lines["periodic_remove"] = " || ".join(remove)
    return lines
