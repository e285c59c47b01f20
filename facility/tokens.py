"""Per-user bearer token files, the WLCG ``BEARER_TOKEN_FILE`` convention.

The hub writes each user's current OIDC access token to ``<root>/<username>/bearer_token``:
the root folder is 0711 (others may pass through but not list it), each user's folder 0700 and
the file 0600, replaced atomically so a reader never sees half a token. With per-user Unix
accounts (auth.unix_accounts) the folder is root:<the user's private group> 0750 and the file
belongs to the user's account (0600, as XRootD's token client demands): only root can write in
the folder, so no user can redirect the hub's writes with a link. The token itself never
goes into an environment variable, a command line, a job script or a log line: only the file's
path does.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from facility import data_tokens
from facility.accounts import ensure_account
from facility.loader import current
from facility.model import UnixAccounts
from facility.private_file import write_private
from facility.runtime import Runtime
from facility.usernames import USERNAME_PATTERN

ENV_TOKEN_FILE = "BEARER_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
ENV_ACCESS_TOKEN_FILE = "AF_ACCESS_TOKEN_FILE"  # noqa: S105 - a variable name
# bearer_token: what storage accepts ($BEARER_TOKEN_FILE); access_token: the OIDC access token.
TOKEN_FILE_NAME = "bearer_token"  # noqa: S105 - a file name
ACCESS_TOKEN_FILE_NAME = "access_token"  # noqa: S105 - a file name


class TokenFiles:
    """Where the hub keeps each user's token file, and how it writes and removes them."""

    def __init__(self, root: str | os.PathLike[str], accounts: UnixAccounts | None = None):
        self.root = Path(root)
        self.accounts = accounts if accounts is not None and accounts.per_user else None

    def path_for(self, username: str, name: str = TOKEN_FILE_NAME) -> Path:
        # Usernames were checked at login already; checked again because they become a path here.
        if not re.fullmatch(USERNAME_PATTERN, username):
            raise ValueError(f"{username!r} cannot be used as a folder name")
        return self.root / username / name

    def write(self, username: str, token: str, name: str = TOKEN_FILE_NAME) -> Path:
        path = self.path_for(username, name)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        if self.accounts is None:
            path.parent.chmod(0o700)
            write_private(path, token)
            return path
        account = ensure_account(username, self.accounts)
        os.chown(path.parent, 0, account.gid, follow_symlinks=False)
        path.parent.chmod(0o750)
        write_private(path, token, owner=(account.uid, account.gid))
        return path

    def remove(self, username: str) -> None:
        for name in (TOKEN_FILE_NAME, ACCESS_TOKEN_FILE_NAME):
            self.path_for(username, name).unlink(missing_ok=True)


def write_user_tokens(
    files: TokenFiles, runtime: Runtime, username: str, access_token: str | None, lifetime: dt.timedelta
) -> dict[str, str]:
    """Write a user's token files; returns the environment that points a notebook server at them.

    The OIDC access token (if any) goes to ``access_token``. ``bearer_token`` holds what storage
    accepts: a data-lake token for this user when the facility's data lake requires tokens
    (facility.data_tokens, valid for `lifetime`), else the access token itself.
    """
    env: dict[str, str] = {}
    if access_token:
        env[ENV_ACCESS_TOKEN_FILE] = str(files.write(username, access_token, ACCESS_TOKEN_FILE_NAME))
    if data_tokens.enabled(runtime):
        prefixes = runtime.data.get("prefixes") or ["/"]
        token = data_tokens.mint(runtime, username, prefixes, lifetime)
        env.update(data_tokens.client_env(runtime, files.write(username, token)))
    elif access_token:
        env[ENV_TOKEN_FILE] = str(files.write(username, access_token))
    return env


def unix_accounts_of(runtime: Runtime) -> UnixAccounts:
    return current(runtime.facility_file).auth.unix_accounts


def token_files_of(runtime: Runtime) -> TokenFiles:
    return TokenFiles(runtime.state_path / "tokens", unix_accounts_of(runtime))
