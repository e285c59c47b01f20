"""What every batch kind's predicted wait shares: the estimate the spawn form and the spawn
progress show, how a wait is put in words, and running a scheduler tool with a time limit.

Each kind's `wait` entry (backends.registry) builds an Estimate from what its scheduler says
(backends/slurm/wait.py, backends/htcondor/wait.py); the hub serves it (hub_config/wait_api.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Estimate.state: "now" starts at once; "wait" queues behind other work; "never" nothing the
# scheduler has can run it; "unknown" the scheduler did not answer or gave no prediction.
STATES = ("now", "wait", "never", "unknown")


@dataclass(frozen=True)
class Estimate:
    state: str
    summary: str  # one sentence in plain words
    details: tuple[str, ...] = field(default_factory=tuple)  # e.g. free GPUs per type
    seconds: int | None = None  # the scheduler's predicted wait, when it gives one

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"estimate state {self.state!r} is not one of {', '.join(STATES)}")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "details": list(self.details)}

    def in_words(self) -> str:
        """The summary and its details as one line (spawn progress messages)."""
        return "; ".join((self.summary, *self.details))


def wait_words(seconds: float) -> str:
    """`about 40 min`, `about 2 h 10 min`, `about 3 days`; under a minute: `less than a minute`."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h" + (f" {rest} min" if rest else "")
    return f"about {round(minutes / 1440)} days"


class ToolError(RuntimeError):
    """A scheduler tool could not be run or did not answer in time; the message says which."""


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str


async def run_tool(
    name: str,
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20,
) -> ToolResult:
    """Run a scheduler command (`name` for messages) without blocking the hub's event loop;
    killed after `timeout` s."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
    except OSError as exc:
        raise ToolError(f"{name} cannot be run here ({exc.strerror})") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ToolError(f"{name} did not answer within {timeout:.0f} s") from None
    return ToolResult(process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
