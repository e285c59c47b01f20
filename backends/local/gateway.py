"""Local backend: Dask schedulers and workers as processes on the facility host.

With ``auth.unix_accounts.mode: per-user`` (the default) they run as the user's own Unix account
through dask-gateway's LocalBackend (setuid processes, a 0700 working folder per cluster holding
its TLS key), with the hub user mapped onto the facility account (facility.accounts), created if the
user asks for a cluster before ever starting a notebook. With ``shared`` they run as the
gateway's own user (UnsafeLocalBackend), for a one-person facility. Either way schedulers, workers
and nannies listen on loopback only (backends.common.listen_hosts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.local import LocalBackend, LocalClusterConfig, UnsafeLocalBackend
from traitlets import Unicode, default

from backends.common.cluster_config import ImageAndGpusMixin
from backends.common.gateway_options import cluster_options_per_user
from backends.common.listen_hosts import ListenHostMixin
from facility.accounts import Account, ensure_account
from facility.data_environment import data_environment
from facility.model import Backend, Facility, UnixAccounts
from facility.runtime import Runtime


class FacilityLocalClusterConfig(ImageAndGpusMixin, LocalClusterConfig):
    """LocalClusterConfig with the facility's image and GPU traits (the cluster options set them)."""


class FacilityLocalBackend(ListenHostMixin, UnsafeLocalBackend):
    """Shared mode: UnsafeLocalBackend configured from facility.yaml by `configure` below."""

    @default("cluster_config_class")
    def _default_cluster_config_class(self) -> type:
        return FacilityLocalClusterConfig


class PerUserLocalBackend(ListenHostMixin, LocalBackend):
    """Per-user mode: each cluster's scheduler and workers run as the facility account of its user."""

    @default("cluster_config_class")
    def _default_cluster_config_class(self) -> type:
        return FacilityLocalClusterConfig

    account_prefix = Unicode("af-", config=True, help="auth.unix_accounts.prefix of facility.yaml.")
    account_group = Unicode("af-users", config=True, help="auth.unix_accounts.group of facility.yaml.")

    def account(self, hub_name: str) -> Account:
        return ensure_account(hub_name, UnixAccounts("per-user", self.account_prefix, self.account_group))

    def set_file_permissions(self, paths: list[str], username: str) -> None:
        # dask-gateway 2026.3 passes the TLS file names with list.extend(str), i.e. one character
        # each (a chown of "/" among them): hand over the folders and the TLS files by name instead.
        account = self.account(username)
        workdir = paths[0]
        folders = [workdir, self.get_certs_directory(workdir), self.get_logs_directory(workdir)]
        for path in [*folders, *self._get_tls_paths(workdir)]:
            os.chown(path, account.uid, account.gid, follow_symlinks=False)

    async def start_process(self, cluster: Any, cmd: list[str], env: dict[str, str], name: str) -> int:
        pid = await super().start_process(cluster, cmd, env, name)
        # The gateway (root) opened the log file: let the user read their own scheduler and worker logs.
        account = self.account(cluster.username)
        log = os.path.join(self.get_logs_directory(cluster.state["workdir"]), f"{name}.log")
        os.chown(log, account.uid, account.gid, follow_symlinks=False)
        return pid

    def make_preexec_fn(self, cluster: Any) -> Any:
        return self.account(cluster.username).preexec_fn(cwd=cluster.state["workdir"])

    def get_env(self, cluster: Any) -> dict[str, str]:
        env = super().get_env(cluster)
        env.update(self.account(cluster.username).environment())
        # Worker scratch space (and the token plugin's files) inside the cluster's private folder,
        # not in a /tmp/dask-scratch-space shared by every user.
        env["DASK_TEMPORARY_DIRECTORY"] = cluster.state["workdir"]
        return env


def configure(c: Any, fac: Facility, backend: Backend, runtime: Runtime, state: Path) -> None:
    """dask-gateway-server settings of a local backend (gateway/gateway_config.py calls this)."""
    c.DaskGateway.backend_class = FacilityLocalBackend
    # Workers on this host read the running facility's data lake (its effective ports).
    c.Backend.cluster_options = cluster_options_per_user(fac, backend, data_environment(fac, backend, runtime))
    c.LocalBackend.clusters_directory = str(state / "clusters")
    if fac.auth.unix_accounts.per_user:  # schedulers and workers as the user's own Unix account
        c.DaskGateway.backend_class = PerUserLocalBackend
        c.PerUserLocalBackend.account_prefix = fac.auth.unix_accounts.prefix
        c.PerUserLocalBackend.account_group = fac.auth.unix_accounts.group
    # Marks schedulers and workers as this instance's, so `af down` can find any left behind.
    c.LocalBackend.inherited_environment = [
        *LocalBackend.class_traits()["inherited_environment"].default(),
        "AF_INSTANCE",
    ]
