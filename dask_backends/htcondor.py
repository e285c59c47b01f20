"""dask-gateway backend for HTCondor (dask-gateway ships none), in the shape of its jobqueue backends.

Like dask-gateway's Slurm and PBS backends it submits the scheduler and each worker as one job
through dask-gateway's jobqueue launcher, polls their states in bulk and removes them on stop.
In per-user mode (auth.unix_accounts) jobs are submitted and removed as the user's own Unix
account, so HTCondor runs them as it, and each user's staging folders (TLS key and certificate)
belong to that account alone; without sudo (dask_backends.launcher). In shared mode the gateway's
own user (or the site's `htcondor_job_user`) submits, as before.

The helpers at the top write HTCondor's submit language safely; batchspawner's CondorSpawner
(hub_config/condor.py) and `af run --backend htcondor` use them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.jobqueue.base import JobQueueBackend, JobQueueClusterConfig
from dask_gateway_server.traitlets import Type
from traitlets import Integer, Unicode

import facility
from af.accounts import Account, lookup
from af.batch_accounts import chroot_argv, job_account
from dask_backends.container import data_cache_environment, job_argv
from dask_backends.launcher import prepare_staging_root, run_launcher, user_staging_root

CONDOR_TOOLS = ("condor_submit", "condor_q", "condor_rm", "condor_hold", "condor_history", "condor_status")
# HTCondor JobStatus codes: which count as "the job may still run".
JOB_STATUS = {
    1: "idle",
    2: "running",
    3: "removed",
    4: "completed",
    5: "held",
    6: "transferring output",
    7: "suspended",
}
LIVE_STATES = {1, 2, 6, 7}
LITERAL_DOLLAR = "$(DOLLAR)"
_JOB_ID = re.compile(r"^\d+\.\d+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SubmitValueError(ValueError):
    """A value that would change the meaning of a submit description."""


def submit_value(value: Any) -> str:
    """A value for the right side of `key = value` in a submit description.

    The submit language ends a command at the line end and expands $(...) macros, so a value
    with a line break or `$(` could add commands or read other settings: refuse both.
    """
    text = str(value)
    if any(ch in text for ch in "\r\n\0") or "$(" in text.replace(LITERAL_DOLLAR, ""):
        raise SubmitValueError(f"{text!r} cannot go into an HTCondor submit description")
    return text


def classad_string(value: Any) -> str:
    """A ClassAd string literal ("..." with \\ and " escaped), for +Attribute and expressions."""
    text = submit_value(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def condor_arguments(argv: Sequence[str]) -> str:
    """The `arguments` value in HTCondor's quoted syntax: each argument in single quotes,
    with ' doubled, " doubled and $ written as $(DOLLAR), the whole list in double quotes."""
    parts = []
    for arg in argv:
        if any(ch in str(arg) for ch in "\r\n\0"):
            raise SubmitValueError(f"{arg!r} cannot be a job argument (line break or NUL)")
        # $ starts a macro in the submit language; $(DOLLAR) is HTCondor's literal $.
        text = str(arg).replace("$", LITERAL_DOLLAR)
        parts.append("'" + text.replace("'", "''").replace('"', '""') + "'")
    return '"' + " ".join(parts) + '"'


def getenv_names(environment: Mapping[str, str]) -> str:
    """`getenv` value listing the variables a job takes from condor_submit's own environment.

    Values never enter the submit description, so they need no quoting; the names must be plain.
    """
    for name in environment:
        if not _ENV_NAME.match(name):
            raise SubmitValueError(f"{name!r} is not a valid environment variable name")
    return ", ".join(sorted(environment)) or "false"


def condor_argv(site: Mapping[str, Any] | None, tool: str, account: Account | None = None) -> list[str]:
    """The argv that runs one HTCondor command line tool at this site.

    site keys: `htcondor_chroot` (HTCondor installed in a chroot, as in the test pool; its tools
    are run through chroot(8), which needs root), `htcondor_bin` (folder of the tools; default:
    found on PATH, or /usr/bin inside the chroot) and `htcondor_job_user` (the account jobs are
    submitted as when the facility runs as root: HTCondor never runs a job as root).
    `account`: the user's own Unix account (per-user mode, af.batch_accounts); it replaces
    `htcondor_job_user`, so HTCondor runs the job as that account.
    """
    if tool not in CONDOR_TOOLS:
        raise ValueError(f"unknown HTCondor tool {tool!r}")
    site = site or {}
    chroot = site.get("htcondor_chroot")
    user = site.get("htcondor_job_user")
    bin_dir = site.get("htcondor_bin") or ("/usr/bin" if chroot else "")
    program = os.path.join(str(bin_dir), tool) if bin_dir else tool
    # Full paths: dask-gateway's launcher runs commands with the job's environment, without PATH.
    if chroot and account is not None:
        return chroot_argv(account, chroot, program)
    if chroot:
        return [_system_program("chroot"), *([f"--userspec={user}:{user}"] if user else []), str(chroot), program]
    if account is not None and os.geteuid() == 0:
        setpriv, *switch = account.setpriv_argv()
        return [_system_program(setpriv), *switch, program]
    if user and os.geteuid() == 0:
        return [_system_program("runuser"), "-u", str(user), "--", program]
    return [program]


def _system_program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def job_user_ids(site: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(uid, gid) of `htcondor_job_user`, looked up where the tools run (the chroot or this host)."""
    site = site or {}
    user = site.get("htcondor_job_user")
    if not user:
        return None
    chroot = site.get("htcondor_chroot")
    passwd = Path(chroot, "etc/passwd") if chroot else Path("/etc/passwd")
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ValueError(f"htcondor_job_user {user!r} is not a user in {passwd}")


def shared_dir(site: Mapping[str, Any] | None, default: str) -> str:
    """`job_dir`: a folder the hub host and the execute nodes both see (job folders, Dask staging)."""
    return str((site or {}).get("job_dir") or default)


def parse_submit_output(stdout: str) -> str:
    """The job id (cluster.proc) from `condor_submit -terse` output such as `12.0 - 12.0`."""
    first = stdout.strip().split(" - ")[0].strip() if stdout.strip() else ""
    if not _JOB_ID.match(first):
        raise ValueError(f"condor_submit printed no job id: {stdout.strip()!r}")
    return first


def parse_states(stdout: str) -> dict[str, int]:
    """job id -> JobStatus from `condor_q -af:j JobStatus` lines such as `12.0 2`."""
    states = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and _JOB_ID.match(fields[0]) and fields[1].isdigit():
            states[fields[0]] = int(fields[1])
    return states


class HTCondorClusterConfig(JobQueueClusterConfig):
    """Dask cluster configuration options when running on HTCondor."""

    accounting_group = Unicode("", help="HTCondor accounting group of the cluster's jobs.", config=True)

    requirements = Unicode("", help="HTCondor `requirements` expression of the cluster's jobs.", config=True)

    max_idle_seconds = Integer(
        0, help="Remove jobs still idle after this many seconds (0: never), so they cannot wait forever.", config=True
    )

    max_runtime_seconds = Integer(0, help="Remove jobs running longer than this (0: no limit).", config=True)

    extra_submit_lines = Unicode("", help="Further submit description lines, written by the operator.", config=True)


class HTCondorBackend(JobQueueBackend):
    """A backend for deploying Dask on an HTCondor pool."""

    cluster_config_class = Type(
        "dask_backends.htcondor.HTCondorClusterConfig",
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
        fac = facility.load(self.facility_file or None)
        return fac, with_default_environment(fac.backend(self.facility_backend))

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
        site = self._facility[1].site or {}
        account = self._account(username) if username else None
        if account is None:
            return condor_argv(site, name)
        if site.get("htcondor_chroot"):
            return condor_argv(site, name, account)  # chroot(8) needs root: the launcher stays root
        # The launcher already runs as the account (do_as_user).
        return condor_argv({k: v for k, v in site.items() if k != "htcondor_job_user"}, name)

    # --- where files live: per gateway user (and their Unix account in per-user mode) ---
    def get_staging_directory(self, cluster) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$", cluster.username):
            raise ValueError(f"username {cluster.username!r} cannot name a folder")
        return os.path.join(self.staging_root, cluster.username, cluster.name)

    async def do_start_cluster(self, cluster):
        fac, backend = self._facility
        # A user may create a cluster before ever starting a notebook: create the account first.
        await asyncio.to_thread(job_account, fac, backend, cluster.username)
        async for state in super().do_start_cluster(cluster):
            yield state

    async def do_as_user(self, user, action, **kwargs):
        account = self._account(user)
        site = self._facility[1].site or {}
        if account is not None:
            user_staging_root(self.staging_root, user, account)
            if not site.get("htcondor_chroot"):
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
        cmd = [*self._tool("condor_rm", username), _checked_job_id(job_id)]
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
            **data_cache_environment(fac, backend),
            **env,
        }
        image = _image_for(fac, env.get("AF_IMAGE"))
        argv = job_argv(fac, backend, image, argv, gpus=int(env.get("AF_WORKER_GPUS", 0) or 0))
        if setup:
            argv = ["/bin/sh", "-c", f'{setup}\nexec "$@"', "dask-gateway-job", *argv]
        lines = {
            "universe": "vanilla",
            "executable": argv[0],
            "arguments": condor_arguments(argv[1:]),
            "transfer_executable": "false",
            "should_transfer_files": "NO",
            "getenv": getenv_names(env),
            "initialdir": staging_dir,
            "output": os.path.join(staging_dir, log_name),
            "error": os.path.join(staging_dir, log_name),
            "request_cpus": str(max(1, int(cores))),
            "request_memory": f"{max(1, -(-int(memory) // 2**20))}M",
            "+DaskGatewayCluster": classad_string(cluster.name),
            "+DaskGatewayRole": classad_string(role),
        }
        lines.update(_policy_lines(config))
        description = "\n".join(f"{key} = {submit_value(value)}" for key, value in lines.items())
        if config.extra_submit_lines:
            description += "\n" + config.extra_submit_lines
        description += "\nqueue\n"
        cmd = [*self._tool("condor_submit", cluster.username), "-terse"]
        return cmd, env, description

    def get_stop_cmd_env(self, job_id):
        return [*self._tool("condor_rm"), _checked_job_id(job_id)], {}

    def get_status_cmd_env(self, job_ids):
        ids = [_checked_job_id(j) for j in job_ids]
        # The gateway's own user asks about every user's jobs.
        return [*self._tool("condor_q"), "-allusers", *ids, "-af:j", "JobStatus"], {"PATH": os.environ.get("PATH", "")}

    def parse_job_states(self, stdout):
        return {job_id: status in LIVE_STATES for job_id, status in parse_states(stdout).items()}

    def parse_job_id(self, stdout):
        return parse_submit_output(stdout)


def with_default_environment(backend: facility.Backend) -> facility.Backend:
    """Jobs without a container use this Python environment unless `site.environment` names one."""
    if backend.container_runtime == "apptainer" or (backend.site or {}).get("environment"):
        return backend
    return dataclasses.replace(backend, site={**(backend.site or {}), "environment": sys.prefix})


def _chown_tree(path: str, uid: int, gid: int) -> None:
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid)
            os.chmod(os.path.join(folder, name), 0o600)  # the TLS key: its owner only


def configure_gateway(
    c: Any, fac: facility.Facility, backend: facility.Backend, facility_file: str, state: Path
) -> None:
    """dask-gateway-server settings of an htcondor backend (called from gateway_config.py)."""
    site = backend.site or {}
    c.HTCondorBackend.facility_file = facility_file
    c.HTCondorBackend.facility_backend = backend.name
    c.HTCondorBackend.staging_root = os.path.join(shared_dir(site, str(state)), "dask-gateway", backend.name)
    prepare_staging_root(c.HTCondorBackend.staging_root, fac)
    c.HTCondorClusterConfig.accounting_group = str(site.get("htcondor_accounting_group", ""))
    c.HTCondorClusterConfig.requirements = str(site.get("htcondor_requirements", ""))
    c.HTCondorClusterConfig.max_idle_seconds = int(site.get("pending_timeout_seconds", 0))
    c.HTCondorClusterConfig.max_runtime_seconds = int(site.get("htcondor_max_runtime_seconds", 0))


def _checked_job_id(job_id: str) -> str:
    if not _JOB_ID.match(str(job_id)):
        raise ValueError(f"{job_id!r} is not an HTCondor job id")
    return str(job_id)


def _image_for(fac: facility.Facility, registry: str | None) -> facility.Image:
    for image in fac.images:
        if image.registry == registry:
            return image
    return fac.default_image


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
