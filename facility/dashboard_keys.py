"""The key that opens one Dask cluster's dashboard, bound to its owner.

An HMAC of the owner's name and the cluster's name under the facility's dashboard secret
(runtime.json). Only the gateways (which put it into the scheduler's and workers' environment,
gateway.dashboard_guard) and the hub's dashboard service (hub_config/dashboard_service.py, which
computes it for the logged-in user) know the secret.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_HEADER = "X-AF-Dashboard-Key"
ENV_KEY = "AF_DASHBOARD_KEY"


def dashboard_key(secret: str, username: str, cluster_name: str) -> str:
    """The key that opens `cluster_name`'s dashboard, bound to its owner `username`."""
    if not secret:
        raise ValueError("the facility's dashboard secret is empty")
    # NUL cannot occur in either name, so ("ab", "c") and ("a", "bc") give different keys.
    message = f"{username}\0{cluster_name}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
