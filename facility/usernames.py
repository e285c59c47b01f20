"""Which hub usernames the facility accepts: they end up in paths, job names and batch scripts."""

from __future__ import annotations

import re

# Letters, digits and . _ @ - only (e-mail style names from OIDC pass): no path separators,
# spaces or shell metacharacters can reach a path, a job name or a batch script.
USERNAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$"


class UsernameError(ValueError):
    """A name the facility cannot use; the message says why."""


def checked_username(name: str) -> str:
    """The name as the hub stores it (JupyterHub lower-cases names at login), or UsernameError."""
    if not re.fullmatch(USERNAME_PATTERN, name):
        raise UsernameError(
            f"{name[:40]!r} cannot be a username: use 1-64 letters, digits and . _ @ -, starting with a letter or digit"
        )
    return name.lower()
