"""Login for the embedded facility: JupyterHub's shared-password login, groups from facility.yaml.

A real site sets ``auth.type: oidc`` instead (oauthenticator, see hub_config.oidc); nothing else changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from traitlets import Dict, List, Unicode

from facility import data_tokens
from facility.runtime import read_runtime
from facility.tokens import token_files_of, write_user_tokens

# Without OIDC there is no access token to follow: a data-lake token for a working day per start.
LOCAL_DATA_TOKEN_HOURS = 12


class FacilityPasswordAuthenticator(SharedPasswordAuthenticator):
    """SharedPasswordAuthenticator that also gives each user their facility.yaml groups."""

    user_groups = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        config=True,
        help="username -> groups, inverted from facility.yaml's auth.groups.",
    )

    def pre_spawn_start(self, user: Any, spawner: Any) -> Any:
        """A data-lake token for the new server when the facility's data lake requires tokens."""
        # Refuse a request outside the user's allowance before anything is awaited (as hub_config.oidc):
        # the hub answers the REST API's 400 only for a refusal that comes at once.
        check = getattr(spawner, "validated", None)
        if check is not None:
            check(spawner.user_options or {})
        runtime = read_runtime()
        if data_tokens.enabled(runtime):
            return self._write_data_token(user, spawner, runtime)
        return None

    async def _write_data_token(self, user: Any, spawner: Any, runtime: Any) -> None:
        lifetime = dt.timedelta(hours=LOCAL_DATA_TOKEN_HOURS)
        # The first token file creates the user's Unix account (useradd): off the hub's event loop.
        files = token_files_of(runtime)
        env = await asyncio.to_thread(write_user_tokens, files, runtime, user.name, None, lifetime)
        spawner.environment = {**spawner.environment, **env}  # a new dict: the configured one is shared

    def post_spawn_stop(self, user: Any, spawner: Any) -> None:
        token_files_of(read_runtime()).remove(user.name)

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
