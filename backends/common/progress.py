"""The steps of a notebook server's start, in words, for the hub's spawn page.

JupyterHub shows what `Spawner.progress()` yields (a percentage and a message per event). The
child spawners record their steps here as they happen (account created, job submitted, process
started); FacilitySpawner.progress (hub_config/spawner.py) passes them on. Percentages are fixed
per step, so the bar moves the same way on every backend: request checked 10, account 20,
submitted 35, queued 45, running 65, waiting for the server to answer 70-95, ready 100 (the hub).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from facility.accounts import AccountError, lookup
from facility.model import UnixAccounts

ACCOUNT, SUBMITTED, QUEUED, RUNNING, ANSWERING = 20, 35, 45, 65, 70


class SpawnStepsMixin:
    """Records a start's steps; `progress()` yields them until the server process or job runs."""

    _steps: list[dict[str, Any]] | None = None
    _started_steps = False  # set by mark_started(): the last step of this spawner is said

    def say(self, progress: int, message: str) -> None:
        """One step of the start, shown on the spawn page."""
        if self._steps is None:
            self._steps = []
        self._steps.append({"progress": progress, "message": message})

    def mark_started(self, progress: int, message: str) -> None:
        """The last step this spawner says: its server runs and the hub waits for it to answer."""
        self.say(progress, message)
        self._started_steps = True

    def reset_steps(self) -> None:
        self._steps, self._started_steps = [], False

    async def new_steps(self, shown: int) -> list[dict[str, Any]]:
        """The steps after the first `shown`, waiting briefly for one when there is none yet."""
        for _ in range(5):
            steps = self._steps or []
            if len(steps) > shown:
                return steps[shown:]
            await asyncio.sleep(0.1)
        return []

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        shown = 0
        while True:
            for step in await self.new_steps(shown):
                shown += 1
                yield step
            if self._started_steps and shown >= len(self._steps or []):
                return


def account_step(hub_name: str, settings: UnixAccounts) -> str:
    """What the spawn page says before the user's Unix account is looked up or created."""
    try:
        existing = lookup(hub_name, settings)
    except AccountError:
        existing = None  # ensure_account raises the same error with its own message
    if existing is None:
        return "Creating your own Unix account on the facility (first start only)"
    return f"Your Unix account {existing.name} is ready"
