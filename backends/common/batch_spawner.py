"""Starting a notebook job while watching it, shared by the Slurm and HTCondor spawners.

batchspawner's start() waits for the job to run and its server to report in, but says little
when the job is refused, stuck or gone. WatchedStartMixin runs a watcher beside it; when either
fails, the spawn fails with a message saying what happened to the job, the job is cancelled and
the spawner's state cleared, so the hub is clean for the next spawn. The scheduler-specific
messages come from the hooks below, implemented in backends/slurm/spawner.py and
backends/htcondor/spawner.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from batchspawner import JobStatus
from traitlets import HasTraits, List, Unicode, default

from backends.common.container import JobWrapping
from backends.common.progress import ACCOUNT, QUEUED, RUNNING, SUBMITTED, SpawnStepsMixin, account_step
from facility.accounts import Account, AccountError, ensure_account
from facility.model import Facility, UnixAccounts


class JobAccountMixin(SpawnStepsMixin, HasTraits):
    """Submit, query and cancel a user's batch jobs as the user's own Unix account (per-user mode).

    Mix in after JobCommandMixin (its use_account switches the job's folder) and before
    WatchedStartMixin. start() creates the account on first use (also inside
    `account_chroots`, where the batch system's daemons look accounts up) and hands it to
    `use_account`, where each spawner switches its commands, working folder and environment to it.
    The account is kept in the spawner's state, so after a hub restart a running job is still
    queried and cancelled as its owner. Empty `account_prefix`: shared mode, the hub's own user.
    """

    account_prefix = Unicode("", help="auth.unix_accounts.prefix in per-user mode; empty: shared mode.").tag(
        config=True
    )
    account_group = Unicode("af-users", help="auth.unix_accounts.group.").tag(config=True)
    account_chroots = List(Unicode(), help="Chroots of the batch system that need the account too.").tag(config=True)

    account: Account | None = None

    def use_account(self, account: Account) -> None:
        """Switch this spawner's commands, working folder and environment to `account`
        (JobCommandMixin, earlier in the spawner's bases, does)."""
        raise NotImplementedError

    async def start(self) -> tuple[str, int]:
        if self.account_prefix:
            settings = UnixAccounts("per-user", self.account_prefix, self.account_group)
            roots = [Path(p) for p in self.account_chroots]
            self.say(ACCOUNT, await asyncio.to_thread(account_step, self.user.name, settings))
            try:
                # useradd takes a moment: not on the hub's event loop.
                account = await asyncio.to_thread(ensure_account, self.user.name, settings, roots)
            except AccountError as exc:
                raise RuntimeError(f"Cannot start your server: {exc}") from None
            self.account = account
            self.use_account(account)
        return await super().start()  # type: ignore[misc]

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        if self.account is not None:
            state["unix_account"] = self.account.record()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        account = Account.from_record(state.get("unix_account") or {})
        if account is not None:
            self.account = account
            self.use_account(account)


def account_settings(fac: Facility, chroots: list[str]) -> dict[str, Any]:
    """JobAccountMixin traits from facility.yaml's auth.unix_accounts (nothing in shared mode)."""
    accounts = fac.auth.unix_accounts
    if not accounts.per_user:
        return {}
    return {"account_prefix": accounts.prefix, "account_group": accounts.group, "account_chroots": chroots}


class JobCommandMixin(HasTraits):
    """Where and how the notebook server's job runs: its folder, and its command as the backend's
    jobs run it (backends.common.container), kept as plain traits (no callable in the config)."""

    job_workdir = Unicode(help="Folder the job starts in and writes its log to (shared with the nodes).").tag(
        config=True
    )

    job_prefix = List(Unicode(), help="Container runtime command the server runs under (job_wrapping).").tag(
        config=True
    )
    job_program_dir = Unicode("", help="Folder of the environment's programs (job_wrapping).").tag(config=True)

    @default("req_homedir")
    def _req_homedir_default(self) -> str:
        return self.job_workdir

    def use_account(self, account: Account) -> None:
        """Per-user mode (JobAccountMixin): the job starts in the account's home."""
        self.job_workdir = self.req_homedir = str(account.home)

    def server_argv(self) -> list[str]:
        """batchspawner's single-user command, wrapped for the job."""
        argv = [self.batchspawner_singleuser_cmd, *self.cmd, *self.get_args()]  # type: ignore[attr-defined]
        return JobWrapping(prefix=tuple(self.job_prefix), program_dir=self.job_program_dir).apply(argv)


def wrapping_traits(wrapping: JobWrapping) -> dict[str, Any]:
    """JobCommandMixin's traits for a job wrapping."""
    return {"job_prefix": list(wrapping.prefix), "job_program_dir": wrapping.program_dir}


# How often the spawn progress asks the scheduler again about a pending job.
QUEUE_ESTIMATE_SECONDS = 10


class WatchedStartMixin(SpawnStepsMixin):
    """Mix in before a batchspawner spawner class (which provides job_id, query_job_status, ...).

    The spawner defines a `pending_timeout` trait (seconds a job may wait in the queue).
    """

    scheduler_name = "the scheduler"  # how the spawn page names the batch system

    # start() errors that already say what went wrong (the job was never queued): raised as they are.
    reraised_errors: tuple[str, ...] = ()

    async def _queue_estimate(self, job_id: str) -> str:
        """What the scheduler says about when the pending job starts, in words ("" when nothing)."""
        return ""

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """The recorded steps (account, submission), then the job's state: the scheduler's estimate
        and reason while it waits in the queue (refreshed every `QUEUE_ESTIMATE_SECONDS`), running.
        A state message is sent only when its text changes."""
        shown, steps, words, refresh_at = "", 0, "", 0.0
        while True:
            for step in (self._steps or [])[steps:]:
                steps += 1
                yield step
            if self.state_isrunning():
                host = self.state_gethost()  # the node, from the status already queried (None if unsaid)
                where = f" on {host}" if host else ""
                yield {"progress": RUNNING, "message": f"Your notebook job {self.job_id} is running{where}"}
                return
            if not self.job_id:
                message = ""  # submitting: the submission step says it once done
            elif self.state_ispending():
                if time.monotonic() >= refresh_at:
                    words = await self._queue_estimate(self.job_id)
                    refresh_at = time.monotonic() + QUEUE_ESTIMATE_SECONDS
                message = f"Your notebook job {self.job_id} waits in the queue" + (f": {words}" if words else "")
            else:
                message = f"Asking {self.scheduler_name} about your notebook job {self.job_id}"
            if message and message != shown:
                yield {"progress": QUEUED, "message": message}
                shown = message
            await asyncio.sleep(1)

    async def _held_message(self, job_id: str) -> str | None:
        """A message when the scheduler holds the job (checked after each status query); None if not."""
        return None

    async def _pending_message(self, job_id: str, waited: float) -> str:
        """The message when the job has waited in the queue longer than `pending_timeout`."""
        raise NotImplementedError

    async def _ended_message(self, job_id: str) -> str:
        """The message when the job left the queue before its server reported in."""
        raise NotImplementedError

    async def submit_batch_script(self) -> str:
        job_id = await super().submit_batch_script()  # type: ignore[misc]
        self._submitted_at = time.monotonic()
        self._submitted_job = job_id
        if job_id:
            self.say(SUBMITTED, f"Your notebook job {job_id} was submitted to {self.scheduler_name}")
        return job_id

    async def _watch_job(self) -> str:
        """Return a message once the job is held, waits too long, or ends before the server is up."""
        while True:
            await asyncio.sleep(1)
            job_id = self.job_id
            if not job_id:
                continue
            status = await self.query_job_status()
            waited = time.monotonic() - getattr(self, "_submitted_at", time.monotonic())
            held = await self._held_message(job_id)
            if held:
                return held
            if status == JobStatus.PENDING and waited > self.pending_timeout:
                return await self._pending_message(job_id, waited)
            if status == JobStatus.NOTFOUND:
                return await self._ended_message(job_id)

    async def start(self) -> tuple[str, int]:
        self._submitted_job = ""
        self._starting = True
        self.say(SUBMITTED - 5, f"Submitting your notebook job to {self.scheduler_name}")
        try:
            return await self._start_and_watch()
        finally:
            self._starting = False

    async def _start_and_watch(self) -> tuple[str, int]:
        starting = asyncio.ensure_future(super().start())  # type: ignore[misc]
        watching = asyncio.ensure_future(self._watch_job())
        try:
            done, _ = await asyncio.wait({starting, watching}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the hub's start_timeout, or a stop while pending: it calls stop() next
            starting.cancel()
            watching.cancel()
            # Cancelled mid-query, batchspawner takes the job for gone and clears the job id;
            # stop() needs it to cancel the job.
            await asyncio.wait({starting, watching})
            if not starting.cancelled():
                starting.exception()  # retrieved: its "job has disappeared" is not what happened
            self.job_id = self._submitted_job
            raise
        if starting in done:
            watching.cancel()
            error = starting.exception()
            if error is None:
                return starting.result()
            if not self._submitted_job or str(error).startswith(self.reraised_errors):
                raise error
            # batchspawner saw the job vanish first: say what happened to it.
            message = await self._ended_message(self._submitted_job)
        else:
            starting.cancel()
            message = watching.result()
        self.log.warning("Spawn of %s failed: %s", self.user.name, message)
        self.job_id = self._submitted_job
        if self.job_id:
            with contextlib.suppress(RuntimeError):  # the job may be gone already
                await self.cancel_batch_job()
        self.clear_state()
        raise RuntimeError(message)
