"""The facility's generated secrets: one list, used by `af up` (runtime.json) and by the Helm chart.

The chart cannot import Python, so `python -m facility.chart_schema` writes this list to
helm/analysis-facility/files/runtime-secrets.json, which templates/secrets.yaml iterates; a test
checks the file is current. Adding a secret here adds it to both.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from cryptography.fernet import Fernet

# What each kind looks like; templates/secrets.yaml generates the same shapes with Helm functions.
GENERATORS: dict[str, Callable[[], str]] = {
    "hex": lambda: secrets.token_hex(32),  # 32 random bytes as 64 hex digits
    "password": lambda: secrets.token_urlsafe(12),  # typed by people: 16 characters
    "long-password": lambda: secrets.token_urlsafe(32),  # 43 characters
    "fernet": lambda: Fernet.generate_key().decode(),  # url-safe base64 of 32 bytes
}

SECRETS: dict[str, str] = {
    "cookie_secret": "hex",  # JupyterHub's cookies
    "proxy_token": "hex",  # hub <-> configurable-http-proxy
    "user_password": "password",  # the shared login, only with auth.shared_password (a workshop)
    "admin_password": "long-password",
    "gateway_db_key": "fernet",  # dask-gateway's database encryption
    "crypt_key": "hex",  # JupyterHub's auth_state (OIDC tokens)
    "dashboard_secret": "hex",  # Dask dashboard keys derive from it (facility.dashboard_keys)
    "services_key": "hex",  # hub service tokens derive from it (facility.hub_services)
}


def complete_secrets(old: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every secret: the ones already made are kept (restarts keep sessions), the others generated."""
    old = old or {}
    return {name: old.get(name) or GENERATORS[kind]() for name, kind in SECRETS.items()}
