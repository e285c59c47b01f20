"""The ledger: what one user holds now, read from the components that run it.

- notebook servers: the hub (in the hub itself, its spawners; elsewhere its REST API, which also
  gives the user's groups and admin flag);
- Dask clusters and their workers: every gateway's USER_CLUSTERS_PATH (facility.cluster_lifetime),
  answered from the gateway's own database, with each cluster's worker count and worker size;
  ALL_CLUSTERS_PATH gives every user's at once (the usage sampler, facility.usage).

Nothing is counted on the side: a restart of the hub or a gateway loses nothing, because each
answer comes from the state that component reloads (the hub's database of spawners, the gateway's
of clusters). A component that does not answer makes the ledger unknown (LedgerUnavailable), and
the callers refuse to grow rather than guess: what a silent gateway's clusters hold is unknown,
and allowing would let an outage lift everyone's quota (docs/facility-yaml.md, quotas).

The questions are asynchronous (tornado's AsyncHTTPClient, as JupyterHub's own): the hub and the
gateways await them on their event loop; one-shot commands use asyncio.run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from facility.cluster_lifetime import ALL_CLUSTERS_PATH, USER_CLUSTERS_PATH, gateway_url
from facility.quota import SERVER, Holding, cluster_holding

TIMEOUT_S = 3  # at most this per check (gateways answer in milliseconds); awaited, never blocking a process's loop
GIB = 2**30
T = TypeVar("T")


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


def cluster_entry(
    workers: int,
    worker_cores: float,
    worker_memory_bytes: float,
    worker_gpus: float,
    running: int = 0,
    title: str = "",
) -> dict[str, Any]:
    """A gateway's answer for one cluster (besides its name, the id): worker count (running or
    starting: what the quota counts), of those the workers running (what usage counts), size of one
    worker, and the name people see (in refusals and `af status`)."""
    return {
        "title": title,
        "workers": workers,
        "running_workers": running,
        "worker_cores": worker_cores,
        "worker_memory_gb": worker_memory_bytes / GIB,
        "worker_gpus": worker_gpus,
    }


def clusters_from_answer(backend: str, answer: Mapping[str, Any], running_only: bool = False) -> list[Holding]:
    """The clusters of a gateway's answer; `running_only`: with only their running workers."""
    count = "running_workers" if running_only else "workers"
    return [
        cluster_holding(
            backend,
            c["name"],
            int(c[count]),
            c["worker_cores"],
            c["worker_memory_gb"],
            c["worker_gpus"],
            c.get("title", ""),  # gateways of before it was sent
        )
        for c in answer["clusters"]
    ]


async def _get_json(url: str, authorization: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET; OSError when no answer came back in time (refused, timed out, reset)."""
    try:
        reply = await AsyncHTTPClient().fetch(
            url,
            headers={"Authorization": authorization},
            connect_timeout=TIMEOUT_S,
            request_timeout=TIMEOUT_S,
            raise_error=False,  # an HTTP status is an answer; no answer at all still raises
        )
    except HTTPClientError as exc:  # tornado's 599: timed out
        raise OSError(str(exc)) from None
    return reply.code, json.loads(reply.body or b"null") if reply.code < 400 else None


async def _gateway(
    backend: str, url: str, token: str, path: str, parse: Callable[[str, Any], list[T]]
) -> list[T] | None:
    """What one gateway answers to GET `path`, parsed; None when it does not answer (or makes no sense)."""
    try:
        code, answer = await _get_json(url.rstrip("/") + path, f"Bearer {token}")
        return parse(backend, answer) if code == 200 else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


async def _every_gateway(
    gateways: Mapping[str, tuple[str, str]], path: str, parse: Callable[[str, Any], list[T]]
) -> list[T]:
    """GET `path` of every gateway at once (backend name -> (url, the gateway's hub token)), so the
    wait is that of the slowest (at most TIMEOUT_S); LedgerUnavailable naming those that did not answer."""
    names = list(gateways)
    answers = await asyncio.gather(*(_gateway(n, *gateways[n], path, parse) for n in names))
    silent = [name for name, answer in zip(names, answers, strict=True) if answer is None]
    if silent:
        raise LedgerUnavailable(f"the Dask gateway of {', '.join(repr(b) for b in silent)} did not answer")
    return [h for answer in answers for h in answer or []]


async def gateway_clusters(gateways: Mapping[str, tuple[str, str]], user: str) -> list[Holding]:
    """The user's clusters on every gateway (backend name -> (url, the gateway's hub token))."""
    return await _every_gateway(gateways, gateway_url("", USER_CLUSTERS_PATH, user), clusters_from_answer)


async def hub_user(hub_api_url: str, token: str, user: str) -> HubUser:
    """The user as the hub's REST API describes them (a token with read:users and read:servers)."""
    try:
        code, model = await _get_json(f"{hub_api_url.rstrip('/')}/users/{quote(user, safe='')}", f"token {token}")
    except (OSError, ValueError) as exc:
        raise LedgerUnavailable(f"the hub did not answer ({type(exc).__name__})") from None
    if code == 404:  # never logged in: holds nothing, no groups
        return HubUser((), False, [])
    if code != 200 or not isinstance(model, dict):
        raise LedgerUnavailable(f"the hub answered {code}")
    servers = [server_holding(name, s.get("user_options") or {}) for name, s in (model.get("servers") or {}).items()]
    return HubUser(tuple(model.get("groups") or ()), bool(model.get("admin")), servers)


async def every_users_clusters(
    gateways: Mapping[str, tuple[str, str]], running_only: bool = False
) -> dict[str, list[Holding]]:
    """Every user's clusters on every gateway: user -> clusters, with their workers running or
    starting (what the quota counts) or, `running_only`, running (what usage counts)."""

    def parse(backend: str, answer: Any) -> list[tuple[str, Holding]]:
        return [
            (user, holding)
            for user, clusters in answer["users"].items()
            for holding in clusters_from_answer(backend, {"clusters": clusters}, running_only=running_only)
        ]

    held: dict[str, list[Holding]] = {}
    for user, holding in await _every_gateway(gateways, ALL_CLUSTERS_PATH, parse):
        held.setdefault(user, []).append(holding)
    return held


async def running_clusters(gateways: Mapping[str, tuple[str, str]]) -> dict[str, list[Holding]]:
    """Every user's clusters on every gateway, with their running workers only: user -> clusters."""
    return await every_users_clusters(gateways, running_only=True)
