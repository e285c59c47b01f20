"""Login for the embedded facility: JupyterHub's shared-password login, groups from facility.yaml.

A real site sets ``auth.type: oidc`` instead (oauthenticator, see hub_config.oidc); nothing else changes.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from traitlets import Dict, List, Unicode

# Letters, digits and . _ @ - only (e-mail style names from OIDC pass): no path separators,
# spaces or shell metacharacters can reach a path, a job name or a batch script.
USERNAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$"


class FacilityPasswordAuthenticator(SharedPasswordAuthenticator):
    """SharedPasswordAuthenticator that also gives each user their facility.yaml groups."""

    user_groups = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        config=True,
        help="username -> groups, inverted from facility.yaml's auth.groups.",
    )

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        model = await super().authenticate(handler, data)
        if model is not None:
            model["groups"] = sorted(set(model.get("groups", [])) | set(self.user_groups.get(model["name"], [])))
        return model


def invert_groups(groups: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """facility.yaml lists users per group; the authenticator needs groups per user."""
    per_user: dict[str, list[str]] = {}
    for group, users in groups.items():
        for user in users:
            per_user.setdefault(user, []).append(group)
    return per_user
