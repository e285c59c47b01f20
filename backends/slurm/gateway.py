"""dask-gateway on Slurm: dask-gateway-server's SlurmBackend configured from facility.yaml.

What this adds to upstream's SlurmBackend:
- jobs are submitted and cancelled by dask-gateway-jobqueue-launcher running as the user's own
  Unix account in per-user mode (auth.unix_accounts; setpriv, not `sudo -u <user>`), so Slurm runs
  them as that account; in shared mode as the gateway's own user;
- the staging folders live under the gateway's state folder, not in users' home folders; in
  per-user mode in a folder per user that only the user's account can enter;
- scheduler and worker commands run through backends.common.container (apptainer on the image's
  CVMFS path, or the configured environment), every argument shell-quoted;
- schedulers, workers and their dashboards listen on their node's address, not on every interface
  (backends.common.listen_hosts);
- GPU workers ask Slurm for `--gres=gpu[:TYPE]:N`; workers carry the backend's data-cache settings;
- every Slurm command sees the site's SLURM_CONF;
- the image and the worker GPUs are cluster-config traits (ImageAndGpusMixin), set by the options.

site keys read: see backends.slurm.settings.SlurmSettings.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
from traitlets import Unicode, default

import facility
from backends.common.cluster_config import ImageAndGpusMixin
from backends.common.gateway_options import cluster_options_per_user
from backends.common.job_accounts import job_account
from backends.common.launcher import prepare_staging_root, run_launcher, user_folder, user_staging_root
from backends.common.listen_hosts import NodeAddressMixin
from backends.slurm.scripts import dask_job_options, job_argv, render_dask_script
from backends.slurm.settings import SlurmSettings
from facility.data_environment import data_environment
from facility.model import Backend, Facility, Image
from facility.runtime import Runtime

LATE_SWEEP_SECONDS = 5


class FacilitySlurmClusterConfig(ImageAndGpusMixin, SlurmClusterConfig):
    """SlurmClusterConfig plus the image and the GPUs each worker asks for."""

    gpu_type = Unicode("", help="GPU model for worker gres, empty for any.", config=True)


class FacilitySlurmBackend(NodeAddressMixin, SlurmBackend):
    """SlurmBackend for one facility.yaml backend (set by `configure` below)."""

    _late_sweeps: set[asyncio.Future] = set()  # kept referenced until done

    facility_file = Unicode(help="facility.yaml the gateway serves.", config=True)
    backend_name = Unicode(help="Name of the Slurm backend in facility.yaml.", config=True)
    staging_root = Unicode(help="Folder holding each cluster's staging folder (TLS files, logs).", config=True)

    @default("cluster_config_class")
    def _default_cluster_config_class(self) -> type:
        return FacilitySlurmClusterConfig

    def _facility(self) -> tuple[Facility, Backend]:
        fac = facility.current(self.facility_file or None)  # facility.loader's reload policy
        return fac, fac.backend(self.backend_name)

    @property
    def site(self) -> SlurmSettings:
        return SlurmSettings.of(self._facility()[1])

    def _slurm_env(self) -> dict[str, str]:
        return self.site.slurm_env()

    def _image(self, cluster: Any) -> Image:
        fac, backend = self._facility()
        return next((i for i in fac.images_for(backend) if i.registry == cluster.config.image), fac.default_image)

    @property
    def per_user(self) -> bool:
        return self._facility()[0].auth.unix_accounts.per_user

    async def do_as_user(self, user: str, action: str, **kwargs: Any) -> tuple[int, str, str]:
        fac, backend = self._facility()
        # Created on first use: a user may create a cluster before ever starting a notebook.
        account = await asyncio.to_thread(job_account, fac, user)
        if account is not None:
            user_staging_root(self.staging_root, user, account)
        return await run_launcher(action, kwargs, account)

    def get_staging_directory(self, cluster: Any) -> str:
        if self.per_user:
            return str(user_folder(self.staging_root, cluster.username, cluster.name))
        return os.path.join(self.staging_root, cluster.name)

    def get_worker_env(self, cluster: Any) -> dict[str, str]:
        fac, backend = self._facility()
        return {**data_environment(fac, backend), **super().get_worker_env(cluster)}

    def get_submit_cmd_env_stdin(self, cluster: Any, worker: Any = None) -> tuple[list[str], dict[str, str], str]:
        cmd, env, _ = super().get_submit_cmd_env_stdin(cluster, worker)
        fac, backend = self._facility()
        config = cluster.config
        gpus = 0
        if worker is not None:
            argv, setup = self.get_worker_command(cluster, worker.name), config.worker_setup
            gpus = config.worker_gpus
        else:
            argv, setup = self.get_scheduler_command(cluster), config.scheduler_setup
        script = render_dask_script(setup, job_argv(fac, backend, self._image(cluster), argv, gpus=gpus))
        extra, late = dask_job_options(
            self.site, config.qos, config.account, gpus, config.gpu_type, cluster_job_name(cluster.name)
        )
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


def configure(c: Any, fac: Facility, backend: Backend, runtime: Runtime, state: Path) -> None:
    """dask-gateway-server settings of a Slurm backend (gateway/gateway_config.py calls this)."""
    site = SlurmSettings.of(backend)
    c.DaskGateway.backend_class = FacilitySlurmBackend
    c.Backend.cluster_options = cluster_options_per_user(fac, backend)
    c.FacilitySlurmBackend.facility_file = runtime.facility_file
    c.FacilitySlurmBackend.backend_name = backend.name
    c.FacilitySlurmBackend.staging_root = str(state / "staging")
    prepare_staging_root(state / "staging", fac)
    c.FacilitySlurmClusterConfig.partition = site.dask_partition or (backend.queues[0].name if backend.queues else "")
    c.FacilitySlurmClusterConfig.account = site.account
    c.FacilitySlurmClusterConfig.qos = site.qos
    c.FacilitySlurmClusterConfig.gpu_type = site.dask_gpu_type
    # The scheduler is small; upstream's 2 GB would block a worker's slot on small nodes.
    c.FacilitySlurmClusterConfig.scheduler_memory = "1 G"
