"""Login for the embedded facility: an own password per user, groups from facility.yaml.

Users get their credential from `af user add` (facility.credentials keeps only scrypt hashes);
JupyterHub's SharedPasswordAuthenticator stays underneath for the explicit opt-in
`auth.shared_password` (a workshop), which never opens an account that has its own credential.
An event's shared code (`af event create --code`) with a name nobody has yet makes that name a
participant of the event (facility.events), once.
Failed logins are throttled per user and per address, with counts that outlive a hub restart.
A real site sets ``auth.type: oidc`` instead (oauthenticator, see hub_config.oidc); nothing else changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from tornado import web
from traitlets import Dict, Integer, List, Unicode

from facility import data_tokens
from facility.credentials import CredentialStore, generate_password
from facility.events import Event, EventError, EventStore
from facility.runtime import read_runtime
from facility.tokens import token_files_of, write_user_tokens
from hub_config.login_throttle import Throttle
from hub_config.spawner import admit

# Without OIDC there is no access token to follow: a data-lake token for a working day per start.
LOCAL_DATA_TOKEN_HOURS = 12
FAILURE_WINDOW_SECONDS = 300


class FacilityPasswordAuthenticator(SharedPasswordAuthenticator):
    """Own credentials first; the shared password (when configured) only for names without one."""

    credentials_file = Unicode("", config=True, help="The facility's password hashes (facility.credentials).")
    user_groups = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        config=True,
        help="username -> groups, inverted from facility.yaml's auth.groups.",
    )
    events_file = Unicode("", config=True, help="The facility's events (facility.events): participants' windows.")
    failures_per_user = Integer(5, config=True, help="Failed logins of one name before it must wait.")
    failures_per_address = Integer(20, config=True, help="Failed logins from one address before it must wait.")
    lockout_seconds = Integer(30, config=True, help="How long a name or address waits after too many failures.")
    failures_folder = Unicode(
        "", config=True, help="Where the failed-login counts outlive a hub restart (empty: in memory only)."
    )

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._by_user = self._throttle(self.failures_per_user, "login-failures-by-user.json")
        self._by_address = self._throttle(self.failures_per_address, "login-failures-by-address.json")

    def _throttle(self, max_failures: int, file_name: str) -> Throttle:
        path = os.path.join(self.failures_folder, file_name) if self.failures_folder else None
        return Throttle(max_failures, FAILURE_WINDOW_SECONDS, self.lockout_seconds, path)

    @property
    def store(self) -> CredentialStore:
        return CredentialStore(self.credentials_file)

    def check_allow_config(self) -> None:
        # SharedPasswordAuthenticator's warnings assume shared passwords are the only way in.
        Authenticator.check_allow_config(self)

    def check_allowed(self, username: str, authentication: dict[str, Any] | None = None) -> bool:
        # allow_all is on only with the shared-password opt-in; otherwise a name needs a credential.
        return self.store.has(username) or super().check_allowed(username, authentication)

    def pre_spawn_start(self, user: Any, spawner: Any) -> Any:
        """After the request's checks (admit), a data-lake token for the server if the lake needs tokens."""
        return self._prepare(user, spawner, admit(spawner))

    async def _prepare(self, user: Any, spawner: Any, quota_check: Awaitable[None] | None) -> None:
        if quota_check is not None:
            await quota_check
        runtime = read_runtime()
        if data_tokens.enabled(runtime):
            await self._write_data_token(user, spawner, runtime)

    async def _write_data_token(self, user: Any, spawner: Any, runtime: Any) -> None:
        lifetime = dt.timedelta(hours=LOCAL_DATA_TOKEN_HOURS)
        # The first token file creates the user's Unix account (useradd): off the hub's event loop.
        files = token_files_of(runtime)
        env = await asyncio.to_thread(write_user_tokens, files, runtime, user.name, None, lifetime)
        spawner.environment = {**spawner.environment, **env}  # a new dict: the configured one is shared

    def post_spawn_stop(self, user: Any, spawner: Any) -> None:
        token_files_of(read_runtime()).remove(user.name)

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        username = self.normalize_username(data.get("username", ""))
        address = _client_address(handler)
        self._refuse_if_throttled(username, address)
        own = await asyncio.to_thread(self.store.verify, username, data.get("password", ""))
        if own is None:  # no own credential: only the shared password (if opted in) may open it
            model = await super().authenticate(handler, data)
            if model is None:  # or an event's code, for a name nobody has yet
                model = await self._join_with_code(handler, username, data.get("password", ""))
        else:
            model = {"name": username, "admin": username in self.admin_users} if own else None
        if model is None:
            self._by_user.failed(username)
            self._by_address.failed(address)
            return None
        self._by_user.succeeded(username)
        event = await asyncio.to_thread(self._event_of, model["name"])
        if event is not None:
            refusal = event.refusal()
            if refusal:  # the right password outside the event's window: say so, on the login page
                self.log.info("Login of %s refused: %s", model["name"], refusal)
                raise web.HTTPError(403, refusal)
        groups = set(model.get("groups", [])) | set(self.user_groups.get(model["name"], []))
        # manage_groups makes a login's groups the user's only ones: keep the event's group.
        model["groups"] = sorted(groups | ({event.group} if event else set()))
        return model

    async def _join_with_code(self, handler: Any, username: str, code: str) -> dict[str, Any] | None:
        """An event's shared code with a chosen name: the name joins the event as a participant.

        Only a name that nobody has (no hub user, no credential) can join, so the code never opens
        an existing account. The new name then gets a credential nobody knows: the code does not
        open it a second time either (its owner stays logged in; `af user reset` or `af event
        handout` gives them a password)."""
        if not self.events_file:
            return None
        events = EventStore(self.events_file)
        event = await asyncio.to_thread(events.with_code, code)
        if event is None:
            return None
        if username in self.admin_users or handler.find_user(username) is not None or self.store.has(username):
            self.log.info("Code login to event %s refused: the name %r is taken", event.name, username)
            raise web.HTTPError(403, f"The name {username!r} is taken; choose another name to join {event.name}.")
        try:
            await asyncio.to_thread(events.join, event.name, username)
        except EventError as exc:
            raise web.HTTPError(403, str(exc)) from None
        if not await asyncio.to_thread(self.store.add, username, generate_password()):
            raise web.HTTPError(403, f"The name {username!r} is taken; choose another name to join {event.name}.")
        self.log.info("%s joined the event %s with its code", username, event.name)
        return {"name": username, "admin": False}

    def _event_of(self, username: str) -> Event | None:
        return EventStore(self.events_file).event_of(username) if self.events_file else None

    def _refuse_if_throttled(self, username: str, address: str) -> None:
        # Checked before the password, so the right password does not help during the wait.
        for throttle, key, whose in (
            (self._by_user, username, "for this user"),
            (self._by_address, address, "from your address"),
        ):
            wait = throttle.wait(key)
            if wait:
                self.log.warning("Login of %r from %s refused: too many failed attempts %s", username, address, whose)
                # The hub's login page shows an HTTPError's message in place of its own.
                raise web.HTTPError(429, f"Too many failed attempts {whose}; try again in {wait} s")


def _client_address(handler: Any) -> str:
    # The proxy appends the peer it saw to X-Forwarded-For: its last entry cannot be forged by a
    # client, while tornado's remote_ip would follow a client-sent X-Real-Ip.
    forwarded = handler.request.headers.get("X-Forwarded-For", "")
    return forwarded.split(",")[-1].strip() or handler.request.remote_ip or "unknown"


def invert_groups(groups: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """facility.yaml lists users per group; the authenticator needs groups per user."""
    per_user: dict[str, list[str]] = {}
    for group, users in groups.items():
        for user in users:
            per_user.setdefault(user, []).append(group)
    return per_user
