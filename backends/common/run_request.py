"""What `af run` hands a kind's runner (backends.registry Kind.runner), and how a runner fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facility.model import Backend, Facility


class RunFailed(RuntimeError):
    """The notebook ran but a cell failed, or it could not be started; the message says which."""


@dataclass(frozen=True)
class RunRequest:
    notebook: Path
    parameters: dict[str, Any]
    facility: Facility
    backend: Backend
    run_dir: Path
    environment: dict[str, str] = field(default_factory=dict)  # for the kernel: data-lake URLs, backend
    cell_timeout: int | None = None

    @property
    def output(self) -> Path:
        return self.run_dir / self.notebook.name

    @property
    def log(self) -> Path:
        return self.run_dir / "run.log"
