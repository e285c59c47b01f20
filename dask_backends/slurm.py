"""dask-gateway on Slurm: dask-gateway-server's SlurmBackend configured from facility.yaml.

What this adds to upstream's SlurmBackend:
- jobs are submitted and cancelled by dask-gateway-jobqueue-launcher running as the user's own
  Unix account in per-user mode (auth.unix_accounts; setpriv, not `sudo -u <user>`), so Slurm runs
  them as that account; in shared mode as the gateway's own user;
- the staging folders live under the gateway's state folder, not in users' home folders; in
  per-user mode in a folder per user that only the user's account can enter;
- scheduler and worker commands run through dask_backends.container (apptainer on the image's
  CVMFS path, or the configured environment), every argument shell-quoted;
- GPU workers ask Slurm for `--gres=gpu[:TYPE]:N`; workers carry the backend's data-cache settings;
- every Slurm command sees the site's SLURM_CONF.

site keys read: slurm_conf, account, qos, sbatch_options, and the container keys.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
from traitlets import Integer, Unicode, default

import facility
from af.batch_accounts import job_account
from dask_backends.container import data_cache_environment, job_argv
from dask_backends.launcher import prepare_staging_root, run_launcher, user_staging_root
from facility.model import Backend, Facility, Image

LATE_SWEEP_SECONDS = 5


class FacilitySlurmClusterConfig(SlurmClusterConfig):
    """SlurmClusterConfig plus the GPUs each worker asks for."""

    worker_gpus = Integer(0, help="GPUs per worker job (Slurm gres).", config=True)
    gpu_type = Unicode("", help="GPU model for worker gres, empty for any.", config=True)


class FacilitySlurmBackend(SlurmBackend):
    """SlurmBackend for one facility.yaml backend (set by dask_backends.gateway_config)."""

    _late_sweeps: set[asyncio.Future] = set()  # kept referenced until done

    facility_file = Unicode(help="facility.yaml the gateway serves.", config=True)
    backend_name = Unicode(help="Name of the Slurm backend in facility.yaml.", config=True)
    staging_root = Unicode(help="Folder holding each cluster's staging folder (TLS files, logs).", config=True)

    @default("cluster_config_class")
    def _default_cluster_config_class(self) -> type:
        return FacilitySlurmClusterConfig

    def _facility(self) -> tuple[Facility, Backend]:
        if not hasattr(self, "_loaded"):
            fac = facility.load(self.facility_file or None)
            self._loaded = (fac, fac.backend(self.backend_name))
        return self._loaded

    @property
    def site(self) -> dict[str, Any]:
        return self._facility()[1].site or {}

    def _slurm_env(self) -> dict[str, str]:
        conf = self.site.get("slurm_conf")
        return {"SLURM_CONF": str(conf)} if conf else {}

    def _image(self, cluster: Any) -> Image:
        fac, backend = self._facility()
        wanted = cluster.config.environment.get("AF_IMAGE", "")
        for image in fac.images_for(backend):
            if image.registry == wanted:
                return image
        return fac.default_image

    @property
    def per_user(self) -> bool:
        return self._facility()[0].auth.unix_accounts.per_user

    async def do_as_user(self, user: str, action: str, **kwargs: Any) -> tuple[int, str, str]:
        fac, backend = self._facility()
        # Created on first use: a user may create a cluster before ever starting a notebook.
        account = await asyncio.to_thread(job_account, fac, backend, user)
        if account is not None:
            user_staging_root(self.staging_root, user, account)
        return await run_launcher(action, kwargs, account)

    def get_staging_directory(self, cluster: Any) -> str:
        if self.per_user:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$", cluster.username):
                raise ValueError(f"username {cluster.username!r} cannot name a folder")
            return os.path.join(self.staging_root, cluster.username, cluster.name)
        return os.path.join(self.staging_root, cluster.name)

    def get_worker_env(self, cluster: Any) -> dict[str, str]:
        fac, backend = self._facility()
        return {**data_cache_environment(fac, backend), **super().get_worker_env(cluster)}

    def get_submit_cmd_env_stdin(self, cluster: Any, worker: Any = None) -> tuple[list[str], dict[str, str], str]:
        cmd, env, _ = super().get_submit_cmd_env_stdin(cluster, worker)
        fac, backend = self._facility()
        gpus = 0
        if worker is not None:
            argv, setup = self.get_worker_command(cluster, worker.name), cluster.config.worker_setup
            gpus = int(cluster.config.environment.get("AF_WORKER_GPUS", cluster.config.worker_gpus) or 0)
        else:
            argv, setup = self.get_scheduler_command(cluster), cluster.config.scheduler_setup
        command = shlex.join(job_argv(fac, backend, self._image(cluster), argv, gpus=gpus))
        script = "\n".join(["#!/bin/sh", setup, f"exec {command}", ""])
        extra = [f"--qos={self.site['qos']}"] if self.site.get("qos") and not cluster.config.qos else []
        if self.site.get("account") and not cluster.config.account:
            extra.append(f"--account={self.site['account']}")
        if gpus:
            kind = cluster.config.gpu_type
            extra.append(f"--gres=gpu:{kind}:{gpus}" if kind else f"--gres=gpu:{gpus}")
        extra += [str(o) for o in self.site.get("sbatch_options", [])]
        # Later options win in sbatch: GPU workers go to the GPU partition where the site has one.
        late = (
            [f"--partition={self.site['dask_gpu_partition']}"] if gpus and self.site.get("dask_gpu_partition") else []
        )
        late.append(f"--job-name={cluster_job_name(cluster.name)}")
        # sbatch reads SLURM_CONF; upstream's --export lists what the job gets (not SLURM_CONF).
        env = {**env, **self._slurm_env()}
        return [cmd[0], *extra, *cmd[1:], *late], env, script

    async def do_stop_cluster(self, cluster: Any) -> None:
        await super().do_stop_cluster(cluster)
        # A worker stopped while its sbatch was in flight has a job the gateway never recorded:
        # cancel whatever is left under the cluster's job name, now and once more a little later
        # (such an sbatch may still be running now; the gateway does not wait for it).
        await self._sweep(cluster.username, cluster.name)
        late = asyncio.ensure_future(self._sweep(cluster.username, cluster.name, delay=LATE_SWEEP_SECONDS))
        self._late_sweeps.add(late)
        late.add_done_callback(self._late_sweeps.discard)

    async def _sweep(self, username: str, cluster_name: str, delay: float = 0) -> None:
        await asyncio.sleep(delay)
        sweep = [self.cancel_command, f"--name={cluster_job_name(cluster_name)}"]
        try:
            code, stdout, stderr = await self.do_as_user(
                user=username, action="stop", cmd=sweep, env=self._slurm_env(), staging_dir=None
            )
        except Exception as exc:  # the late sweep runs on its own: say why, never raise into nothing
            code, stdout, stderr = 1, "", str(exc)
        if code != 0:
            self.log.warning("Sweeping the jobs of cluster %s failed: %s", cluster_name, (stderr or stdout).strip())

    def get_stop_cmd_env(self, job_id: str) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().get_stop_cmd_env(job_id)
        return cmd, {**env, **self._slurm_env()}

    def get_status_cmd_env(self, job_ids: list[str]) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().get_status_cmd_env(job_ids)
        return cmd, {**env, **self._slurm_env()}


def cluster_job_name(cluster_name: str) -> str:
    """Slurm job name of every job of one gateway cluster (names are the gateway's hex UUIDs)."""
    return f"dask-gateway-{cluster_name}"


def configure(c: Any, facility_file: str, backend: Backend, state: Path) -> None:
    """gateway_config.py's Slurm part: which backend, where staging goes, partition and account."""
    site = backend.site or {}
    c.FacilitySlurmBackend.facility_file = facility_file
    c.FacilitySlurmBackend.backend_name = backend.name
    c.FacilitySlurmBackend.staging_root = str(state / "staging")
    prepare_staging_root(state / "staging", facility.load(facility_file or None))
    partition = site.get("dask_partition") or (backend.queues[0].name if backend.queues else "")
    c.FacilitySlurmClusterConfig.partition = str(partition)
    c.FacilitySlurmClusterConfig.account = str(site.get("account", ""))
    c.FacilitySlurmClusterConfig.qos = str(site.get("qos", ""))
    c.FacilitySlurmClusterConfig.gpu_type = str(site.get("dask_gpu_type", ""))
    # The scheduler is small; upstream's 2 GB would block a worker's slot on small nodes.
    c.FacilitySlurmClusterConfig.scheduler_memory = "1 G"
