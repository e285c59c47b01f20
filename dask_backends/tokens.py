"""The user's bearer token in the notebook and on their Dask workers (``$BEARER_TOKEN_FILE``).

In the notebook the hub keeps the token file fresh (hub_config.oidc). For the workers the token
travels inside a distributed WorkerPlugin sent over the user's own TLS connection to their
scheduler: each worker writes it to a 0600 file in a 0700 folder of its own local directory and
points ``BEARER_TOKEN_FILE`` at it. The token is never a cluster option (the gateway stores those
in its database), an environment variable of a job, a command-line argument or a log line.

    from dask_backends.tokens import ship_token
    ship_token(client)          # again after the token was refreshed, to renew the workers' copy
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from facility.private_file import write_private

ENV_TOKEN_FILE = "BEARER_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
ENV_ACCESS_TOKEN_FILE = "AF_ACCESS_TOKEN_FILE"  # noqa: S105 - the OIDC access token, when it differs
PLUGIN_NAME = "af-bearer-token"


class NoTokenError(RuntimeError):
    """This notebook has no token file (the facility logs in without OIDC, or the file is gone)."""


def token_file() -> Path:
    path = os.environ.get(ENV_TOKEN_FILE)
    if not path:
        raise NoTokenError(f"${ENV_TOKEN_FILE} is not set: this facility gives no access tokens (no OIDC login)")
    return Path(path)


def read_token() -> str:
    try:
        return token_file().read_text().strip()
    except FileNotFoundError:
        raise NoTokenError(f"{token_file()} does not exist; log in to the hub again") from None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    write_private(path, text)


class BearerTokenPlugin(WorkerPlugin):
    """Writes the user's token files into each worker's own folder and points the variables there."""

    name = PLUGIN_NAME

    def __init__(self, tokens: dict[str, str], plain_env: dict[str, str] | None = None):
        self._tokens = tokens  # variable name -> token, e.g. BEARER_TOKEN_FILE -> the storage token
        self._plain_env = plain_env or {}  # not secret, e.g. X509_CERT_DIR for the data lake's TLS

    def __repr__(self) -> str:  # never show a token in a repr, a log or an error message
        return f"{type(self).__name__}({sorted(self._tokens)}, tokens hidden)"

    def setup(self, worker: Any) -> None:
        folder = Path(worker.local_directory) / "af-token"
        for variable, token in self._tokens.items():
            path = folder / variable.lower()
            _write_private(path, token)
            os.environ[variable] = str(path)
        os.environ.update(self._plain_env)


def ship_token(client: Any, token: str | None = None) -> None:
    """Give every worker of the client's cluster, present and future, the current token files."""
    tokens = {ENV_TOKEN_FILE: token or read_token()}
    access = os.environ.get(ENV_ACCESS_TOKEN_FILE)
    if access and Path(access).exists():
        tokens[ENV_ACCESS_TOKEN_FILE] = Path(access).read_text().strip()
    plain = {k: os.environ[k] for k in ("X509_CERT_DIR",) if k in os.environ}
    client.register_plugin(BearerTokenPlugin(tokens, plain), name=PLUGIN_NAME)
