"""Login through an OpenID Connect provider (INDIGO-IAM, EGI Check-in, Keycloak, ...).

oauthenticator's GenericOAuthenticator does the code flow; this module configures it from
facility.yaml's ``auth.oidc`` (endpoints from the issuer's discovery document, the client secret
from an environment variable, the claims that carry the username and the groups) and extends it
with what the facility needs on top:

- the provider's groups become JupyterHub groups (``manage_groups``), which decide backends and
  allowances (facility.allowances); members of ``admin_groups`` are hub admins;
- tokens are kept in the encrypted auth_state and refreshed with the refresh token *before* the
  access token expires (every ``refresh_age_seconds``, the hub renews a token that would expire
  before the next check);
- the current access token is written to a per-user token file (facility.tokens) whose path,
  never the token, reaches the notebook as ``$AF_ACCESS_TOKEN_FILE``; ``$BEARER_TOKEN_FILE`` (what
  storage clients read) points at the same token or, when the facility's data lake requires
  tokens (facility.data_tokens), at a data-lake token minted for the user with the same lifetime.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import time
from collections.abc import Awaitable
from typing import Any

import requests
from oauthenticator.generic import GenericOAuthenticator
from traitlets import Unicode

from facility.model import Facility
from facility.runtime import read_runtime
from facility.tokens import TokenFiles, unix_accounts_of, write_user_tokens
from hub_config.spawner import admit


class OIDCConfigError(RuntimeError):
    """The identity provider cannot be used as configured; the message says why."""


def discover(issuer: str, timeout: float = 10) -> dict[str, Any]:
    """The provider's OpenID configuration (its endpoints), from <issuer>/.well-known/openid-configuration."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = requests.get(url, timeout=timeout)
        reply.raise_for_status()
        document = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise OIDCConfigError(f"cannot read the OpenID configuration of {issuer} from {url}: {exc}") from None
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise OIDCConfigError(f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r}")
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint") if k not in document]
    if missing:
        raise OIDCConfigError(f"{url} lacks {', '.join(missing)}")
    return document


async def _maybe_await(result: Any) -> Any:
    # Authenticator hooks may be plain functions or coroutines.
    return await result if inspect.isawaitable(result) else result


class FacilityOIDCAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator that refreshes tokens ahead of expiry and keeps per-user token files."""

    token_dir = Unicode("", config=True, help="Folder of the per-user token files; empty: no token files.")

    @property
    def token_files(self) -> TokenFiles | None:
        return TokenFiles(self.token_dir, unix_accounts_of(read_runtime())) if self.token_dir else None

    def build_auth_state_dict(self, token_info: dict[str, Any], user_info: dict[str, Any]) -> dict[str, Any]:
        state = super().build_auth_state_dict(token_info, user_info)
        if token_info.get("expires_in"):
            # The token response says how long the token lives, not when it ends: remember that.
            state["expires_at"] = time.time() + int(token_info["expires_in"])
        return state

    def _expires_before_next_check(self, auth_state: dict[str, Any]) -> bool:
        expires_at = auth_state.get("expires_at")
        margin = 2 * (self.auth_refresh_age or 0)
        return bool(expires_at) and expires_at - time.time() < margin

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        auth_state = await user.get_auth_state() if self.enable_auth_state else None
        if auth_state and auth_state.get("refresh_token") and self._expires_before_next_check(auth_state):
            self.log.info("Refreshing the access token of %s before it expires", user.name)
            params = self.build_refresh_token_request_params(auth_state["refresh_token"])
            try:
                token_info = await self.get_token_info(handler, params)
                token_info.setdefault("refresh_token", auth_state["refresh_token"])
                model = await self._token_to_auth_model(token_info)
            except Exception as exc:  # the provider refused: the user must log in again
                self.log.warning("Could not refresh the token of %s (%s); a new login is needed", user.name, exc)
                return False
        else:
            model = await super().refresh_user(user, handler, **kwargs)
        if isinstance(model, dict) and (model.get("auth_state") or {}).get("access_token"):
            # May create the user's Unix account (useradd): off the hub's event loop.
            await asyncio.to_thread(self._write_token_files, user.name, model["auth_state"])
        return model

    def _write_token_files(self, username: str, auth_state: dict[str, Any]) -> dict[str, str]:
        """Write the user's token files; returns the environment that points a server at them."""
        files = self.token_files
        access_token = auth_state.get("access_token")
        if files is None or not access_token:
            return {}
        # A data-lake token (if the lake wants one) lives as long as the access token, renewed with it.
        remaining = auth_state.get("expires_at", 0) - time.time()
        lifetime = dt.timedelta(seconds=max(remaining, 60))
        return write_user_tokens(files, read_runtime(), username, access_token, lifetime)

    def pre_spawn_start(self, user: Any, spawner: Any) -> Any:
        """Check the request, then give the new server the path of the user's token file."""
        return self._prepare_token_file(user, spawner, admit(spawner))

    async def _prepare_token_file(self, user: Any, spawner: Any, quota_check: Awaitable[None] | None) -> None:
        if quota_check is not None:
            await quota_check
        # Written here, kept fresh by refresh_user; only its path reaches the server.
        await _maybe_await(super().pre_spawn_start(user, spawner))
        auth_state = await user.get_auth_state()
        env = await asyncio.to_thread(self._write_token_files, user.name, auth_state or {})
        if env:
            # A new dict: the configured environment is shared by every spawner.
            spawner.environment = {**spawner.environment, **env}

    async def post_spawn_stop(self, user: Any, spawner: Any) -> None:
        await _maybe_await(super().post_spawn_stop(user, spawner))
        if self.token_files is not None:
            self.token_files.remove(user.name)


def configure_oidc(c: Any, fac: Facility) -> None:
    """Point JupyterHub's config object `c` at the provider of facility.yaml's auth.oidc."""
    oidc = fac.auth.oidc
    if oidc is None:
        raise OIDCConfigError("auth.type is 'oidc' but facility.yaml has no auth.oidc section")
    secret = os.environ.get(oidc.client_secret_env)
    if not secret:
        raise OIDCConfigError(
            f"${oidc.client_secret_env} is not set: export the OIDC client secret before `af up` "
            "(auth.oidc.client_secret_env names the variable)"
        )
    runtime = read_runtime()
    endpoints = discover(oidc.issuer)
    c.JupyterHub.authenticator_class = FacilityOIDCAuthenticator
    auth = c.FacilityOIDCAuthenticator
    auth.client_id = oidc.client_id
    auth.client_secret = secret
    auth.oauth_callback_url = f"{runtime.public_url}/hub/oauth_callback"
    auth.authorize_url = endpoints["authorization_endpoint"]
    auth.token_url = endpoints["token_endpoint"]
    auth.userdata_url = endpoints["userinfo_endpoint"]
    auth.scope = list(oidc.scopes)
    auth.username_claim = oidc.username_claim
    auth.login_service = oidc.issuer
    # Groups from the provider replace the user's hub groups at every login and refresh.
    auth.manage_groups = True
    auth.auth_state_groups_key = f"oauth_user.{oidc.groups_claim}"
    auth.admin_groups = set(oidc.admin_groups)
    # Who may do what follows the groups (backends' allowed_groups, auth.allowances): anyone the
    # provider vouches for may log in and sees only what their groups allow.
    auth.allow_all = True
    auth.enable_auth_state = True
    auth.auth_refresh_age = oidc.refresh_age_seconds
    auth.refresh_pre_spawn = True
    auth.token_dir = os.path.join(runtime.state_dir, "tokens")
    # auth_state holds the tokens; it is encrypted in the hub database with this instance's key.
    c.CryptKeeper.keys = [bytes.fromhex(runtime.secrets.crypt_key)]
