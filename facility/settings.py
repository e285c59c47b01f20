"""Typed `site` settings of a backend: each kind declares a dataclass, parsed once per backend.

facility/schema.yaml holds each kind's `site` keys, so `af check-facility` and the loader refuse
an unknown key with the file's usual message. ``SiteSettings.of`` checks again when the settings
are built (a Backend made in code skips the schema): an unknown key is a SiteSettingsError naming
it and the allowed keys, never a value read with a silent default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from facility.model import Backend

# Where a Backend keeps its parsed settings: one entry per settings class, made on first use.
_CACHE_ATTRIBUTE = "_site_settings"


class SiteSettingsError(ValueError):
    """A backend's `site` holds a key its kind does not know."""


@dataclass(frozen=True)
class SiteSettings:
    """Base of every kind's settings. Subclasses list their keys as fields with defaults."""

    @classmethod
    def from_site(cls, site: Mapping[str, Any] | None, where: str = "site") -> Self:
        site = dict(site or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(site) - set(names))
        if unknown:
            allowed = ", ".join(sorted(names)) or "none"
            raise SiteSettingsError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {allowed}")
        return cls(**{key: _frozen(value) for key, value in site.items()})

    @classmethod
    def of(cls, backend: Backend) -> Self:
        """The backend's settings, parsed on first use and kept with the (immutable) backend."""
        # A frozen dataclass refuses attribute assignment, not its __dict__: the cache rides along,
        # and dataclasses.replace (a new site) starts without it.
        cache = backend.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
        if cls not in cache:
            cache[cls] = cls.from_site(backend.site, f"backend {backend.name!r}: site")
        return cache[cls]

    def kind_label(self, label: str) -> str:
        """What users are told about where the backend runs; a kind may refine its label."""
        return label


def _frozen(value: Any) -> Any:
    """Lists from YAML become tuples, so settings stay immutable and hashable where it matters."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
