"""`af run` inside a notebook server asks the hub to count it (hub_config/run_admission.py).

There the run's process is the user's own Unix account, which cannot read the facility's
runtime.json and so cannot read the ledger or record its run itself (af.run_quota does both where it
can). The server's environment names the hub (JUPYTERHUB_API_URL) and gives the user's token
(JUPYTERHUB_API_TOKEN); the hub reads the ledger, records the run as the user's and answers with a
lease. While the run is under way a thread renews the lease; when it ends the run is released. A
run killed outright stops counting when its process is gone (the hub sees it on its own host) or,
elsewhere, when its lease lapses.

Anything but the hub's admission refuses the run (RunFailed with a plain message): a hub that does
not answer or does not know the route leaves the quota unknown, and the run would pass unchecked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil
import requests

from backends.common.run_request import RunFailed

ROUTE = "/af/runs"  # below the hub's API URL (/hub/api)
TIMEOUT_S = 30  # the hub asks every gateway (a few seconds at most) before it answers


@dataclass(frozen=True)
class Hub:
    """The hub's API as a notebook server reaches it, and the user's token there."""

    api_url: str
    token: str

    @property
    def runs_url(self) -> str:
        return self.api_url.rstrip("/") + ROUTE

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, url, headers=headers, timeout=TIMEOUT_S, **kwargs)


def hub_from_environment(env: dict[str, str] | None = None) -> Hub | None:
    """The hub of the notebook server this runs in; None outside one (no JUPYTERHUB_API_TOKEN/URL)."""
    env = dict(os.environ) if env is None else env
    url, token = env.get("JUPYTERHUB_API_URL"), env.get("JUPYTERHUB_API_TOKEN")
    return Hub(url, token) if url and token else None


def _message(reply: requests.Response) -> str:
    try:
        return str(reply.json()["message"])
    except (ValueError, KeyError, TypeError):
        return reply.text.strip()[:300] or reply.reason


def admit(hub: Hub, backend: str, name: str) -> dict[str, Any]:
    """The hub's admission of this process's run ({id, lease_seconds, renew_seconds}); RunFailed if refused."""
    me = psutil.Process()
    body = {"backend": backend, "name": name, "pid": me.pid, "started": me.create_time(), "host": socket.gethostname()}
    try:
        reply = hub.request("POST", hub.runs_url, json=body)
    except requests.RequestException as exc:
        raise RunFailed(
            f"Cannot check your quota right now: the hub at {hub.api_url} did not answer ({type(exc).__name__}). "
            "Try again in a minute."
        ) from None
    if reply.status_code == 201:
        return reply.json()
    if reply.status_code == 404:
        raise RunFailed(
            f"Cannot check your quota: the hub at {hub.api_url} does not admit runs of af run "
            f"({hub.runs_url} not found); ask the facility's operators to update it."
        )
    raise RunFailed(_message(reply))


def _renew(hub: Hub, url: str, every: float, stop: threading.Event) -> None:
    """Renew the lease every `every` seconds until stopped; a hub that misses a few renewals is fine."""
    while not stop.wait(every):
        try:
            reply = hub.request("PUT", url)
        except requests.RequestException:
            continue  # the next renewal may reach it; the lease outlasts several
        if reply.status_code == 404:
            print(f"af run: the hub no longer counts this run: {_message(reply)}", file=sys.stderr)
            return


@contextmanager
def admitted(hub: Hub, backend: str, name: str) -> Iterator[str]:
    """Run the block as a run the hub admitted and counts (its id); RunFailed before it if refused."""
    answer = admit(hub, backend, name)
    url = f"{hub.runs_url}/{answer['id']}"
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(hub, url, float(answer["renew_seconds"]), stop), name="af-run-lease", daemon=True
    )
    renewer.start()
    try:
        yield str(answer["id"])
    finally:
        stop.set()
        # Not released if the hub does not answer: it stops counting when this process ends or its lease lapses.
        with contextlib.suppress(requests.RequestException):
            hub.request("DELETE", url)
