"""Per-group idle timeouts (hub.idle_cull): each user sits in the hub group of their timeout.

jupyterhub-idle-culler has one timeout per process and culls what its token may list, so the hub
runs one culler per timeout (hub_config.services), each allowed to see the group
`af-idle-<minutes>m` only. This module keeps every user in exactly the group of their own
timeout (the longest of their groups', `IdleCull.minutes_for`): at each login, through the
authenticator's groups (manage_groups syncs them), and again at each spawn, so a server started
after an edit of facility.yaml or without a new login is culled with the timeout it has now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from facility.model import IDLE_GROUP_PREFIX, IdleCull


def with_idle_group(groups: Iterable[str], cull: IdleCull) -> list[str]:
    """The user's groups with the idle group of their timeout (none when never culled)."""
    own = {g for g in groups if not g.startswith(IDLE_GROUP_PREFIX)}
    minutes = cull.minutes_for(own)
    return sorted(own | ({IdleCull.group_of(minutes)} if minutes else set()))


def post_auth_hook(current_cull: Callable[[], IdleCull]) -> Callable[[Any, Any, dict[str, Any]], dict[str, Any]]:
    """An Authenticator.post_auth_hook adding the idle group to the groups a login reports."""

    def hook(authenticator: Any, handler: Any, authentication: dict[str, Any]) -> dict[str, Any]:
        if "groups" in authentication:  # manage_groups: the hub makes the user's groups exactly these
            authentication["groups"] = with_idle_group(authentication["groups"] or [], current_cull())
        return authentication

    return hook


def sync_idle_group(user: Any, cull: IdleCull) -> None:
    """Put a hub user (jupyterhub.user.User) into the idle group of their timeout now."""
    user.sync_groups(with_idle_group((g.name for g in user.groups), cull))
