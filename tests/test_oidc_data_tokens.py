"""The token-protected data lake: `af up` with data.require_token runs the XRootD origin and XCache
accepting only valid tokens (macaroons over TLS, checked by XRootD's own libXrdMacaroons).

Reads go through the real cache with the real XRootD client (xrdcp), the token in $BEARER_TOKEN_FILE.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pymacaroons import Macaroon

from facility import data_tokens
from facility.runtime import Runtime
from tests.harness import RunningFacility, embedded_raw, execute_in_kernel

CONTENT = b"events for alice\n" * 64
FILE = "/store/tokens-test/sample.txt"

pytestmark = pytest.mark.skipif(
    shutil.which("xrdcp") is None or shutil.which("xrootd") is None,
    reason="XRootD server and client are not installed (scripts/install.d/20-xrootd.sh)",
)


@pytest.fixture(scope="module")
def lake(start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["data"]["require_token"] = True
    running = start_facility(raw)
    origin_root = Path(running.runtime["data"]["origin"]["local_root"])
    target = origin_root / FILE.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(CONTENT)
    return running


def _read(running: RunningFacility, url: str, token: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("BEARER_TOKEN", "BEARER_TOKEN_FILE")}
    env["X509_CERT_DIR"] = str(data_tokens.ca_dir(Runtime.from_dict(running.runtime)))
    if token is not None:
        token_file = tmp_path / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        env.update(data_tokens.client_env(Runtime.from_dict(running.runtime), token_file))
    out = tmp_path / "copy"
    out.unlink(missing_ok=True)
    result = subprocess.run(
        ["xrdcp", "--force", "--nopbar", f"{url}/{FILE}", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result.copied = out.read_bytes() if out.exists() else None  # type: ignore[attr-defined]
    return result


def _urls(running: RunningFacility) -> dict[str, Any]:
    data = running.runtime["data"]
    return {"cache": data["caches"]["local-xcache"]["url"], "origin": data["origin"]["url"]}


def test_servers_accept_only_tokens_over_tls(lake: RunningFacility) -> None:
    for name in ("xrootd-origin", "xcache-local-xcache"):
        config = (lake.state_dir / "xrootd" / f"{name}.cfg").read_text()
        assert "sec.protbind * only ztn" in config and "macaroons.onmissing deny" in config
        assert "xrd.tls " in config
    secret = data_tokens.secret_file(Runtime.from_dict(lake.runtime))
    assert secret.stat().st_mode & 0o077 == 0  # the signing key is private to XRootD's user


def test_read_through_the_cache_with_a_valid_token(lake: RunningFacility, tmp_path: Path) -> None:
    token = data_tokens.mint(Runtime.from_dict(lake.runtime), "alice", ["/store"], lifetime=dt.timedelta(minutes=10))
    result = _read(lake, _urls(lake)["cache"], token, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.copied == CONTENT
    # The cache fetched it from the origin with its own service token and keeps a copy.
    cache_root = Path(lake.runtime["data"]["caches"]["local-xcache"]["local_root"])
    assert (cache_root / FILE.lstrip("/")).exists()


def _forged(token_for: str) -> str:
    forged = Macaroon(location=data_tokens.SITE_NAME, identifier="forged", key=os.urandom(64))
    for caveat in (f"name:{token_for}", "activity:READ_METADATA,DOWNLOAD", "path:/store"):
        forged.add_first_party_caveat(caveat)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    forged.add_first_party_caveat(f"before:{later}")
    return forged.serialize()


@pytest.mark.parametrize("server", ["cache", "origin"])
@pytest.mark.parametrize("kind", ["none", "forged", "expired", "other path"])
def test_reads_without_a_valid_token_are_refused(lake: RunningFacility, tmp_path: Path, server, kind) -> None:
    token = {
        "none": None,
        "forged": _forged("alice"),
        "expired": data_tokens.mint(
            Runtime.from_dict(lake.runtime), "alice", ["/store"], lifetime=dt.timedelta(minutes=-1)
        ),
        "other path": data_tokens.mint(
            Runtime.from_dict(lake.runtime), "alice", ["/store/elsewhere"], lifetime=dt.timedelta(minutes=10)
        ),
    }[kind]
    result = _read(lake, _urls(lake)[server], token, tmp_path)
    assert result.returncode != 0 and result.copied is None
    # No token, a forged or an expired one: authentication fails; a token for other paths: permission denied.
    reason = result.stderr.lower()
    assert "auth failed" in reason or "permission denied" in reason, result.stderr


NOTEBOOK_READ = """
import os, subprocess
def read(env):
    done = subprocess.run(["xrdcp", "--force", "--nopbar", {url!r}, "/dev/null"], env=env, capture_output=True)
    return "OK" if done.returncode == 0 else "REFUSED"
print("MODE", oct(os.stat(os.environ["BEARER_TOKEN_FILE"]).st_mode & 0o777))
print("WITH_TOKEN", read(dict(os.environ)))
print("WITHOUT", read({{k: v for k, v in os.environ.items() if k != "BEARER_TOKEN_FILE"}}))
"""


def test_notebooks_get_a_data_token_from_the_hub(lake: RunningFacility) -> None:
    carol = lake.login("carol")
    reply = carol.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-1000:]
    server = carol.wait_ready()
    try:
        out = execute_in_kernel(
            f"{carol.url}{server['url']}", carol.token(), NOTEBOOK_READ.format(url=f"{_urls(lake)['cache']}/{FILE}")
        )
        assert "MODE 0o600" in out and "WITH_TOKEN OK" in out and "WITHOUT REFUSED" in out
    finally:
        carol.stop_server()
    assert not (lake.state_dir / "tokens" / "carol" / "bearer_token").exists()  # removed with the server
