"""The ledger: what one user holds now, read from the components that run it.

- notebook servers: the hub (in the hub itself, its spawners; elsewhere its REST API, which also
  gives the user's groups and admin flag);
- Dask clusters and their workers: every gateway's USER_CLUSTERS_PATH (facility.cluster_lifetime),
  answered from the gateway's own database, with each cluster's worker count and worker size.

Nothing is counted on the side: a restart of the hub or a gateway loses nothing, because each
answer comes from the state that component reloads (the hub's database of spawners, the gateway's
of clusters). A component that does not answer makes the ledger unknown (LedgerUnavailable), and
the callers refuse to grow rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from facility.cluster_lifetime import USER_CLUSTERS_PATH, gateway_url
from facility.quota import SERVER, Holding, cluster_holding

TIMEOUT_S = 3  # the hub waits for this inline, before a spawn is accepted: gateways answer in milliseconds
GIB = 2**30


class LedgerUnavailable(RuntimeError):
    """A component did not say what the user holds there; the message names it, for the user."""


@dataclass(frozen=True)
class HubUser:
    """What the hub says of a user: groups, admin flag and active (running or starting) servers."""

    groups: tuple[str, ...]
    admin: bool
    servers: list[Holding]


def server_holding(name: str, options: Mapping[str, Any]) -> Holding:
    """A notebook server from its user_options (the validated spawn request)."""

    def number(key: str) -> float:
        return float(options.get(key) or 0)

    return Holding(SERVER, str(options.get("backend", "?")), name, number("cores"), number("memory_gb"), number("gpus"))


def cluster_entry(workers: int, worker_cores: float, worker_memory_bytes: float, worker_gpus: float) -> dict[str, Any]:
    """A gateway's answer for one cluster (besides its name): worker count and size of one worker."""
    return {
        "workers": workers,
        "worker_cores": worker_cores,
        "worker_memory_gb": worker_memory_bytes / GIB,
        "worker_gpus": worker_gpus,
    }


def clusters_from_answer(backend: str, answer: Mapping[str, Any]) -> list[Holding]:
    return [
        cluster_holding(
            backend, c["name"], int(c["workers"]), c["worker_cores"], c["worker_memory_gb"], c["worker_gpus"]
        )
        for c in answer["clusters"]
    ]


def gateway_clusters(gateways: Mapping[str, tuple[str, str]], user: str) -> list[Holding]:
    """The user's clusters on every gateway (backend name -> (url, the gateway's hub token))."""
    held: list[Holding] = []
    silent = []
    for backend, (url, token) in gateways.items():
        try:
            reply = requests.get(
                gateway_url(url, USER_CLUSTERS_PATH, user),
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT_S,
            )
            reply.raise_for_status()
            held += clusters_from_answer(backend, reply.json())
        except (requests.RequestException, ValueError, KeyError):
            silent.append(backend)
    if silent:
        raise LedgerUnavailable(f"the Dask gateway of {', '.join(repr(b) for b in silent)} did not answer")
    return held


def hub_user(hub_api_url: str, token: str, user: str) -> HubUser:
    """The user as the hub's REST API describes them (a token with read:users and read:servers)."""
    try:
        reply = requests.get(
            f"{hub_api_url.rstrip('/')}/users/{quote(user, safe='')}",
            headers={"Authorization": f"token {token}"},
            timeout=TIMEOUT_S,
        )
        if reply.status_code == 404:  # never logged in: holds nothing, no groups
            return HubUser((), False, [])
        reply.raise_for_status()
        model = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise LedgerUnavailable(f"the hub did not answer ({type(exc).__name__})") from None
    servers = [server_holding(name, s.get("user_options") or {}) for name, s in (model.get("servers") or {}).items()]
    return HubUser(tuple(model.get("groups") or ()), bool(model.get("admin")), servers)
