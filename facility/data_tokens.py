"""Token-protected data lake: XRootD origin and XCache that refuse reads without a valid token.

With ``data.require_token: true`` in facility.yaml, `af up` configures the XRootD servers it runs
to accept only bearer tokens over TLS: the ``ztn`` security protocol carries the token, and
XRootD's macaroons plugin (libXrdMacaroons, Debian xrootd-server-plugins) both checks the token
(signature by the facility's secret, expiry) and authorises the request (activity and path
caveats). Debian 12 ships no SciTokens plugin, so tokens are macaroons the facility mints for its
users (``mint``), not the identity provider's JWTs.

XRootD clients read the token from ``$BEARER_TOKEN_FILE`` and trust the servers' certificate
through ``$X509_CERT_DIR`` (the facility's own CA folder). The XCache reads from the origin with
a service token of its own, so users' tokens never leave the cache.

Everything is made once per facility instance and kept in ``<state>/xrootd/tokens`` (the secret
and keys 0600, owned by the unprivileged user XRootD runs as).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import pwd
import secrets
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pymacaroons import Macaroon

from facility.runtime import Runtime

SITE_NAME = "analysis-facility"
READ_ACTIVITIES = ("READ_METADATA", "DOWNLOAD")
SERVICE_TOKEN_DAYS = 30
UNPRIVILEGED_USER = "nobody"


def enabled(runtime: Runtime) -> bool:
    return bool(runtime.data.get("require_token"))


def token_dir(runtime: Runtime) -> Path:
    return runtime.state_path / "xrootd" / "tokens"


def ca_dir(runtime: Runtime) -> Path:
    """The folder XRootD clients trust ($X509_CERT_DIR): the facility's CA certificate, hashed."""
    return ca_dir_from(token_dir(runtime))


def ca_dir_from(folder: Path) -> Path:
    return folder / "ca"


def secret_file(runtime: Runtime) -> Path:
    return token_dir(runtime) / "macaroon-secret"


def service_token_file(runtime: Runtime) -> Path:
    return token_dir(runtime) / "cache-service-token"


def _owned_by_xrootd(path: Path, mode: int) -> None:
    path.chmod(mode)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _private_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    _owned_by_xrootd(path, 0o600)


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    except FileNotFoundError:
        raise RuntimeError("openssl is needed for the token-protected data lake; run `make install`") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"openssl {args[0]} failed: {exc.stderr.decode(errors='replace')[-300:]}") from None


def _make_tls(folder: Path) -> None:
    """A CA of this facility and a certificate for 127.0.0.1 / localhost signed by it."""
    ca = ca_dir_from(folder)
    ca.mkdir(parents=True, exist_ok=True)
    key, csr, cert = folder / "host.key", folder / "host.csr", folder / "host.pem"
    ca_key, ca_cert = folder / "ca.key", ca / "af-ca.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "3650",
        "-subj",
        "/CN=analysis facility data-lake CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = folder / "host.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "3650",
        "-extfile",
        str(extensions),
    )
    _openssl("rehash", str(ca))  # clients look CAs up by subject hash
    ca_key.chmod(0o600)
    for path in (key, cert):
        _owned_by_xrootd(path, 0o600)


def prepare(runtime: Runtime) -> None:
    """Make the secret, the TLS material and the cache's service token, once per instance."""
    if not enabled(runtime):
        return
    folder = token_dir(runtime)
    folder.mkdir(parents=True, exist_ok=True)
    _owned_by_xrootd(folder, 0o711)  # XRootD (nobody) reads its files; others see no listing
    if not secret_file(runtime).exists():
        # XRootD reads the key as base64 text in lines, like `openssl rand -base64 64` writes.
        _private_write(secret_file(runtime), base64.encodebytes(secrets.token_bytes(64)))
    if not (folder / "host.pem").exists():
        _make_tls(folder)
    token = mint(runtime, "xcache", ["/"], lifetime=dt.timedelta(days=SERVICE_TOKEN_DAYS))
    _private_write(service_token_file(runtime), token.encode())


def _secret(runtime: Runtime) -> bytes:
    return base64.b64decode(secret_file(runtime).read_bytes())


def mint(
    runtime: Runtime,
    username: str,
    paths: Iterable[str],
    lifetime: dt.timedelta,
    activities: Iterable[str] = READ_ACTIVITIES,
) -> str:
    """A macaroon the facility's XRootD servers accept: for these paths and activities, until it expires."""
    before = dt.datetime.now(dt.UTC) + lifetime
    token = Macaroon(location=SITE_NAME, identifier=secrets.token_hex(16), key=_secret(runtime))
    token.add_first_party_caveat(f"name:{username}")
    token.add_first_party_caveat(f"activity:{','.join(activities)}")
    for path in paths:
        token.add_first_party_caveat(f"path:{path}")
    token.add_first_party_caveat(f"before:{before.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return token.serialize()


def server_directives(runtime: Runtime) -> list[str]:
    """Configuration lines that make an XRootD server (origin or cache) accept only valid tokens."""
    if not enabled(runtime):
        return []
    folder = token_dir(runtime)
    authdb = folder / "authdb"
    if not authdb.exists():
        authdb.write_text("# Empty: every read is authorised by its token (macaroons.onmissing deny).\n")
    return [
        f"all.sitename {SITE_NAME}",
        # Tokens only over TLS: the ztn protocol refuses to run without it.
        f"xrd.tls {folder / 'host.pem'} {folder / 'host.key'}",
        f"xrd.tlsca certdir {ca_dir(runtime)}",
        "xrootd.seclib libXrdSec.so",
        "sec.protocol ztn -tokenlib libXrdMacaroons.so",
        "sec.protbind * only ztn",
        "ofs.authorize 1",
        "ofs.authlib ++ libXrdMacaroons.so",
        f"acc.authdb {authdb}",
        f"macaroons.secretkey {secret_file(runtime)}",
        "macaroons.onmissing deny",
        # The cache's service token lives longest; XRootD refuses tokens longer-lived than this.
        f"macaroons.maxduration {SERVICE_TOKEN_DAYS * 86400}",
    ]


def client_env(runtime: Runtime, token_file: str | os.PathLike[str]) -> dict[str, str]:
    """Environment an XRootD client needs to read from this facility's data lake with a token."""
    return {"BEARER_TOKEN_FILE": str(token_file), "X509_CERT_DIR": str(ca_dir(runtime))}


def server_env(runtime: Runtime, component: str) -> dict[str, str]:
    """The XCache reads from the origin as a client, with its own service token."""
    if not enabled(runtime) or not component.startswith("xcache-"):
        return {}
    return client_env(runtime, service_token_file(runtime))
