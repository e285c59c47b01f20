"""Local notebook servers: as the user's own Unix account (auth.unix_accounts.mode: per-user),
or as the hub's own user (shared: SimpleLocalProcessSpawner).

JupyterHub's LocalProcessSpawner already starts a server with setuid; it expects the account to
exist under the hub name. This subclass maps the hub user onto the facility account instead
(facility.accounts: ``alice`` -> ``af-alice``, created on first use) and starts the server in that
account's home, so one user's notebook cannot read another's files or tokens.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from traitlets import Unicode

from backends.common.notebook_child import ChildConfig, ParentSpawner, common_config
from backends.common.progress import ACCOUNT, RUNNING, SpawnStepsMixin, account_step
from backends.local import cpu_limit, memory_limit
from backends.local.memory_message import CGROUP_VARIABLE
from facility.accounts import Account, AccountError, ensure_account
from facility.model import Backend, Facility, UnixAccounts
from facility.validation import SpawnRequest

# Run by each kernel of a local server: a MemoryError there names the limit (memory_message.py).
KERNEL_STARTUP = Path(__file__).with_name("kernel_startup.py")


class OwnOutputMixin(SpawnStepsMixin):
    """The server's output goes to its own file (<state>/logs/servers/<user>.log), not to the hub's.

    Inheriting the hub's stdout ties the server to that pipe: after a restart of the hub,
    supervisord has closed its reading end and every later write of the server, or of a kernel it
    starts, fails with a broken pipe (new kernels died at start-up). It also mixed every server's
    lines into hub.log.
    """

    def _output_file(self) -> Any:
        state = os.environ.get("AF_INSTANCE")  # set by `af up` for the hub
        if not state:
            return None
        folder = Path(state) / "logs" / "servers"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = self.user.name + (f"-{self.name}" if self.name else "")
        return open(folder / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps its own copy

    async def start(self) -> Any:
        output = self._output_file()
        if output is None:
            return self._started(await super().start())
        kept = self.popen_kwargs
        self.popen_kwargs = {**kept, "stdout": output, "stderr": subprocess.STDOUT}
        try:
            return self._started(await super().start())
        finally:
            self.popen_kwargs = kept
            output.close()

    def _started(self, address: Any) -> Any:
        self.mark_started(RUNNING, f"Your server process started on this machine (pid {self.pid})")
        return address


class ResourceLimitsMixin:
    """The server and its kernels stay within mem_limit (backends.local.memory_limit) and cpu_limit
    (backends.local.cpu_limit): cgroups made before the start and removed after the stop,
    RLIMIT_DATA (and CPU affinity where there is no CPU cgroup) in the forked server."""

    @property
    def _server_name(self) -> str:
        return self.user.name + (f"-{self.name}" if self.name else "")

    def _cgroup(self) -> Path | None:
        return memory_limit.cgroup_path(os.environ.get("AF_INSTANCE", "hub"), self._server_name)

    def _cpu_cgroup(self) -> Path | None:
        return cpu_limit.cgroup_path(os.environ.get("AF_INSTANCE", "hub"), self._server_name)

    def _memory_preexec(self) -> Any:
        if not self.mem_limit:
            return None
        path = self._cgroup()
        if path is not None:
            memory_limit.create(path, self.mem_limit)
        self.log.info("Memory limit of %s: %d bytes by %s", self._log_name, self.mem_limit, memory_limit.mechanism())
        return memory_limit.preexec(self.mem_limit, path)

    def _cpu_preexec(self) -> Any:
        if not self.cpu_limit:
            return None
        path = self._cpu_cgroup()
        if path is not None:
            cpu_limit.create(path, self.cpu_limit)
        self.log.info("CPU limit of %s: %g cores by %s", self._log_name, self.cpu_limit, cpu_limit.mechanism())
        return cpu_limit.preexec(self.cpu_limit, path, self._server_name)

    def get_env(self) -> dict[str, str]:
        env = super().get_env()  # type: ignore[misc]
        path = self._cgroup()
        if self.mem_limit and path is not None:  # its kernels say when the limit stopped one
            env[CGROUP_VARIABLE] = str(path)
        return env

    def _with_limits(self, then: Any) -> Any:
        """`then` (the spawner's own preexec_fn), after joining the cgroups and setting the limits."""
        steps = [step for step in (self._memory_preexec(), self._cpu_preexec(), then) if step is not None]
        if not steps:
            return None

        def preexec() -> None:
            for step in steps:  # the limits as root (joining a cgroup needs it), then the spawner's own
                step()

        return preexec

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)  # type: ignore[misc]
        # Also after a hub restart, whose restored spawner has no limits.
        for kind, path in (("Memory", self._cgroup()), ("CPU", self._cpu_cgroup())):
            if path is not None and path.exists() and not await self._removed(path):
                self.log.warning("%s cgroup %s still has processes; left in place", kind, path)

    @staticmethod
    async def _removed(path: Path) -> bool:
        for _ in range(20):  # the server's kernels end a moment after it
            if await asyncio.to_thread(memory_limit.remove, path):
                return True
            await asyncio.sleep(0.5)
        return False


class SharedLocalSpawner(ResourceLimitsMixin, OwnOutputMixin, SimpleLocalProcessSpawner):
    """Shared mode: SimpleLocalProcessSpawner with its own output file."""

    def make_preexec_fn(self, name: str) -> Any:
        return self._with_limits(super().make_preexec_fn(name))


class PerUserLocalSpawner(ResourceLimitsMixin, OwnOutputMixin, LocalProcessSpawner):
    """LocalProcessSpawner running each hub user's server as their facility Unix account."""

    account_prefix = Unicode("af-", config=True, help="auth.unix_accounts.prefix of facility.yaml.")
    account_group = Unicode("af-users", config=True, help="auth.unix_accounts.group of facility.yaml.")

    _account: Account | None = None

    @property
    def account(self) -> Account:
        if self._account is None:
            settings = UnixAccounts("per-user", self.account_prefix, self.account_group)
            self._account = ensure_account(self.user.name, settings)
        return self._account

    async def start(self) -> Any:
        settings = UnixAccounts("per-user", self.account_prefix, self.account_group)
        self.say(ACCOUNT, await asyncio.to_thread(account_step, self.user.name, settings))
        try:
            # useradd takes a moment: not on the hub's event loop.
            self._account = await asyncio.to_thread(lambda: self.account)
        except AccountError as exc:
            # The hub shows this message on the spawn page and in the progress stream.
            raise RuntimeError(f"Cannot start your server: {exc}") from None
        self.notebook_dir = str(self._account.home)
        return await super().start()

    def make_preexec_fn(self, name: str) -> Any:
        return self._with_limits(self.account.preexec_fn(cwd=self.account.home))

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env.update(self.account.environment())
        env["PYTHONSTARTUP"] = str(KERNEL_STARTUP)  # a MemoryError names the server's limit
        return env

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        # Internal TLS is not used by the facility; the upstream version looks the hub name up in pwd.
        return paths


def local_child(fac: Facility, backend: Backend, request: SpawnRequest, parent: ParentSpawner) -> ChildConfig:
    config = common_config(fac, backend, request, parent)
    accounts = fac.auth.unix_accounts
    if accounts.per_user:  # the user's own Unix account, created on first use
        config.update(account_prefix=accounts.prefix, account_group=accounts.group)
        return PerUserLocalSpawner, config
    config["home_dir_template"] = parent.home_dir_template
    return SharedLocalSpawner, config
