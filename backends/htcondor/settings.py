"""`site` of HTCondor backends (docs/facility-yaml.md#site-of-htcondor-backends)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from backends.common.settings import BatchSettings


@dataclass(frozen=True)
class HTCondorSettings(BatchSettings):
    htcondor_chroot: str = ""  # HTCondor installed in a chroot: its tools run through chroot(8)
    htcondor_bin: str = ""  # folder of the tools; empty: PATH (or /usr/bin inside the chroot)
    htcondor_job_user: str = ""  # shared mode as root: the account jobs are submitted as
    htcondor_requirements: str = ""
    htcondor_accounting_group: str = ""  # when the form has no queue (Dask jobs always)
    htcondor_max_runtime_seconds: int = 0

    @property
    def chroots(self) -> list[Path]:
        """Chroots whose daemons run jobs as the user, which need the user's account too."""
        return [Path(self.htcondor_chroot)] if self.htcondor_chroot else []

    @property
    def job_environment(self) -> str:
        """Jobs without a container use this Python environment unless `site.environment` names one."""
        return self.environment or sys.prefix
