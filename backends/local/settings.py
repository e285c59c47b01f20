"""`site` of local backends: none yet (an unknown key is refused, not ignored)."""

from __future__ import annotations

from dataclasses import dataclass

from facility.settings import SiteSettings


@dataclass(frozen=True)
class LocalSettings(SiteSettings):
    pass
