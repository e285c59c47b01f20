"""Datasets named by Rucio DID (scope:name): the files and replicas a Rucio server knows, via rucio-clients.

DataLake.files("af:ttbar") asks the facility's Rucio server (facility.yaml data.rucio) for the
dataset's files and their replicas, then reads them through the backend's XCache as any other
data-lake path (dask_backends.data). The server address and the account come from the running
facility's runtime.json (af/rucio_server.py writes them); per-user accounts are a later step.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

# rucio-clients' own patterns (rucio.common.schema.generic SCOPE and NAME): checked here, before any
# request, so a typo gets a plain message instead of the server's schema error.
SCOPE_PATTERN = re.compile(r"^[a-zA-Z_\-.0-9]{1,25}$")
NAME_PATTERN = re.compile(r"^[/A-Za-z0-9][/A-Za-z0-9.\-_]{0,249}$")
CONNECT_TIMEOUT_S = 30
# rucio-clients logs each failed attempt in red on stderr; the errors raised here say it in words.
_QUIET = logging.getLogger(__name__ + ".rucio_clients")
_QUIET.setLevel(logging.CRITICAL)


class RucioLookupError(RuntimeError):
    """A DID could not be resolved; the message says why in plain words."""


class MalformedDid(RucioLookupError, ValueError):
    """Not of the form scope:name."""


class UnknownDid(RucioLookupError, KeyError):
    """The Rucio server does not know this DID."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RucioUnavailable(RucioLookupError):
    """The Rucio server does not answer, or refuses the facility's credentials."""


@dataclass(frozen=True)
class RucioServer:
    """Where a Rucio server answers and the userpass identity the facility reads it with."""

    url: str
    account: str
    username: str
    password: str = field(repr=False)  # never in a printed DataLake

    @classmethod
    def from_runtime(cls, rucio: dict[str, Any]) -> RucioServer:
        """From runtime.json's data.rucio (af.rucio_server.plan_rucio)."""
        return cls(rucio["url"], rucio["account"], rucio["username"], rucio["password"])


def parse_did(did: str) -> tuple[str, str]:
    """(scope, name) of 'scope:name'; MalformedDid naming what is wrong."""
    scope, sep, name = did.partition(":")
    if not sep or not scope or not name:
        raise MalformedDid(f"{did!r} is not a Rucio DID; write scope:name, such as af:ttbar")
    if not SCOPE_PATTERN.match(scope):
        raise MalformedDid(
            f"{did!r}: the scope {scope!r} is not a Rucio scope (1 to 25 letters, digits, '_', '-' or '.')"
        )
    if not NAME_PATTERN.match(name):
        raise MalformedDid(
            f"{did!r}: the name {name!r} is not a Rucio name (letters, digits, '/', '.', '-' or '_', "
            "starting with a letter, a digit or '/'; at most 250)"
        )
    return scope, name


def client(server: RucioServer) -> Any:
    """A rucio-clients Client logged in to `server` (userpass); RucioUnavailable if it cannot be."""
    from rucio.client import Client
    from rucio.common.exception import CannotAuthenticate, RucioException

    class _FacilityClient(Client):
        # rucio-clients keeps one token file per account in $TMPDIR/<user>/.rucio_<user>/ (0700) and
        # reuses it whatever the credentials: one per server and identity here, so facilities side by
        # side (tests) do not take each other's tokens, and wrong credentials are not covered by a
        # token that right ones obtained.
        def _get_auth_tokens(self) -> tuple[str | None, str, str, str]:
            configured, expiry, token, folder = super()._get_auth_tokens()
            if configured:
                return configured, expiry, token, folder
            identity = "\0".join((server.url, server.username, server.password))
            tag = hashlib.sha256(identity.encode()).hexdigest()[:16]
            return None, f"{expiry}_{tag}", f"{token}_{tag}", folder

    try:
        return _FacilityClient(
            rucio_host=server.url,
            auth_host=server.url,
            account=server.account,
            auth_type="userpass",
            creds={"username": server.username, "password": server.password},
            timeout=CONNECT_TIMEOUT_S,
            logger=_QUIET,
        )
    except CannotAuthenticate as exc:
        raise RucioUnavailable(f"the Rucio server at {server.url} refused account {server.account!r}: {exc}") from None
    except RucioException as exc:
        raise unavailable(server, exc) from None


def unavailable(server: RucioServer, exc: Exception, doing: str = "") -> RucioUnavailable:
    """A rucio-clients failure in plain words: a server that does not answer, or one that failed `doing`."""
    from rucio.common.exception import ServerConnectionException

    if isinstance(exc, ServerConnectionException) or "Cannot connect" in str(exc):
        return RucioUnavailable(f"the Rucio server at {server.url} does not answer ({_first_line(exc)})")
    return RucioUnavailable(
        f"the Rucio server at {server.url} failed{' to ' + doing if doing else ''}: {_first_line(exc)}"
    )


def replicas(server: RucioServer, did: str, scheme: str = "root") -> list[dict[str, Any]]:
    """The files of a DID (a dataset, container or file) with their replicas' PFNs (scheme://...), in
    name order: [{scope, name, bytes, adler32, pfns: {rse: [pfn, ...]}}]."""
    from rucio.common.exception import DataIdentifierNotFound, RucioException

    scope, name = parse_did(did)
    rucio = client(server)
    try:
        found = list(rucio.list_replicas([{"scope": scope, "name": name}], schemes=[scheme]))
    except DataIdentifierNotFound:
        raise UnknownDid(_unknown_message(rucio, scope, name, server)) from None
    except RucioException as exc:
        raise unavailable(server, exc, f"list {did}") from None
    if not found:
        # An existing dataset with no files, or a name Rucio lists nothing for: tell them apart.
        try:
            rucio.get_did(scope, name)
        except DataIdentifierNotFound:
            raise UnknownDid(_unknown_message(rucio, scope, name, server)) from None
    return sorted(
        (
            {
                "scope": r["scope"],
                "name": r["name"],
                "bytes": r.get("bytes"),
                "adler32": r.get("adler32"),
                "pfns": {rse: list(pfns) for rse, pfns in (r.get("rses") or {}).items()},
            }
            for r in found
        ),
        key=lambda r: r["name"],
    )


def _unknown_message(rucio: Any, scope: str, name: str, server: RucioServer) -> str:
    """No DID scope:name: name the scopes there are, or the datasets and containers of the scope."""
    from rucio.common.exception import RucioException

    try:
        scopes = sorted(rucio.list_scopes())
        if scope not in scopes:
            known = ", ".join(scopes) or "none"
            return f"no scope {scope!r} in the Rucio server at {server.url}; its scopes: {known}"
        datasets = ", ".join(
            f"{scope}:{d}" for d in sorted(rucio.list_dids(scope, {"name": "*"}, did_type="collection"))
        )
    except RucioException:
        datasets = "unknown"
    datasets = datasets or "none"
    return f"no dataset named {scope}:{name} in the Rucio server at {server.url}; datasets in {scope}: {datasets}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__
