"""Start the test OpenID Connect provider (provider.mjs, npm oidc-provider) and log in through it.

The login is what a browser does, with requests: the hub's /hub/oauth_login redirects to the
provider, the provider's login form is filled in and posted, consent is granted, and the provider
redirects back to the hub's /hub/oauth_callback, which sets the hub's cookie.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.harness import ROOT, HubSession

PROVIDER_SCRIPT = Path(__file__).resolve().parent / "provider.mjs"


class Provider:
    def __init__(self, port: int, settings_file: Path, log_file: Path):
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.settings_file = settings_file
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        node = shutil.which("node")
        if node is None or not (ROOT / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("node or npm oidc-provider is missing; run `make install`")
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT), str(self.settings_file)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"the OIDC provider did not start:\n{self.log_file.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(f"{self.issuer}/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def write_settings(path: Path, port: int, client: dict[str, Any], users: dict[str, Any], ttl: int) -> Path:
    path.write_text(json.dumps({"port": port, "access_token_ttl": ttl, "clients": [client], "users": users}))
    path.chmod(0o600)
    return path


def _form_action(html: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    if not match:
        raise AssertionError(f"no login form in the provider's page:\n{html[:1000]}")
    return match.group(1)


def oidc_login(hub_url: str, issuer: str, username: str, password: str) -> HubSession:
    """Log in to the hub through the provider; AssertionError if the hub did not accept the login."""
    session = HubSession(hub_url, username)
    page = session.http.get(f"{hub_url}/hub/oauth_login", timeout=30)
    page.raise_for_status()
    if not page.url.startswith(issuer):
        raise AssertionError(f"/hub/oauth_login did not lead to the provider but to {page.url}")
    reply = session.http.post(
        issuer + _form_action(page.text), data={"login": username, "password": password}, timeout=60
    )
    if not reply.url.startswith(hub_url):
        raise AssertionError(f"login of {username} did not return to the hub (at {reply.url}):\n{reply.text[:500]}")
    reply.raise_for_status()
    return session
