"""Own login credentials of the embedded facility: one scrypt hash per user in a private file.

`af user add/remove/reset` write the file (af/users.py), the hub's login reads it
(hub_config/auth.py). Only hashes are stored; a password is shown once, when it is made.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from facility.private_file import changing_json, read_json_object

FILE_NAME = "credentials.json"
# scrypt's cost (16 MiB, ~50 ms here): slow enough to make a stolen file expensive to guess.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# What an unknown name is checked against, so a wrong name costs as long as a wrong password.
_DUMMY_SALT = b"analysis-facility-unknown-user"


def credentials_path(state_dir: Path) -> Path:
    """Where a facility keeps its users' password hashes."""
    return Path(state_dir) / FILE_NAME


def generate_password() -> str:
    """A new password for a person to type: 16 URL-safe characters (96 random bits)."""
    return secrets.token_urlsafe(12)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`, salt and hash in base64: the parameters travel with each hash."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether password matches a hash made by hash_password (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class CredentialStore:
    """The users' password hashes in one JSON file (0600), changed under a lock file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict[str, str]:
        return read_json_object(self.path)

    def _changing(self) -> contextlib.AbstractContextManager[dict[str, str]]:
        return changing_json(self.path)

    def names(self) -> list[str]:
        return sorted(self._read())

    def has(self, name: str) -> bool:
        return name in self._read()

    def verify(self, name: str, password: str) -> bool | None:
        """True or False for a user with an own credential; None when the name has none."""
        stored = self._read().get(name)
        if stored is None:
            _scrypt(password, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            return None
        return check_password(password, stored)

    def set(self, name: str, password: str) -> None:
        digest = hash_password(password)
        with self._changing() as hashes:
            hashes[name] = digest

    def add(self, name: str, password: str) -> bool:
        """Store a credential for a new name; False (nothing changed) if the name has one."""
        digest = hash_password(password)
        with self._changing() as hashes:
            if name in hashes:
                return False
            hashes[name] = digest
            return True

    def remove(self, name: str) -> bool:
        with self._changing() as hashes:
            return hashes.pop(name, None) is not None
