"""The quota arithmetic: what one person holds, their quota, and whether a request fits.

What a user holds is a list of Holdings read from the running components each time it is needed
(facility.ledger: the hub's servers, every gateway's clusters), never a counter of our own, so a
restart of the hub or a gateway cannot lose or double it. Here only the sums and the words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from facility.model import QUOTA_KEYS, Ceilings, Facility, Quota

SERVER = "server"
CLUSTER = "cluster"
RUN = "run"  # a run of `af run` under way (facility.runs)
COUNTED = {"servers": SERVER, "clusters": CLUSTER, "runs": RUN}
RESOURCES = ("cores", "memory_gb", "gpus")  # what a cluster's scale changes; QUOTA_KEYS also count things


@dataclass(frozen=True)
class Holding:
    """One notebook server, Dask cluster or `af run` of a user, with what it holds in total."""

    kind: str  # SERVER, CLUSTER or RUN
    backend: str
    name: str
    cores: float = 0.0
    memory_gb: float = 0.0
    gpus: float = 0.0
    workers: int = 0  # clusters: workers running or starting (cores etc. are theirs together)
    title: str = ""  # clusters: the name people see (backends.common.cluster_names), `name` being the id

    def amount(self, key: str) -> float:
        if key in COUNTED:
            return 1 if self.kind == COUNTED[key] else 0
        return getattr(self, key)

    def describe(self) -> str:
        size = f"{_number(self.cores)} cores, {_number(self.memory_gb)} GB" + (
            f", {_number(self.gpus)} GPUs" if self.gpus else ""
        )
        if self.kind == SERVER:
            server = "notebook server" if self.name in ("", "default") else f"notebook server {self.name!r}"
            return f"{server} on {self.backend!r} ({size})"
        if self.kind == RUN:
            return f"af run {self.name} on {self.backend!r} ({size})"
        return f"Dask cluster {self.shown_name} on {self.backend!r} ({self.workers} workers: {size})"

    @property
    def shown_name(self) -> str:
        """The title, quoted, where there is one (it may hold spaces); otherwise the name."""
        return repr(self.title) if self.title else self.name


def cluster_holding(
    backend: str, name: str, workers: int, cores: float, memory_gb: float, gpus: float, title: str = ""
) -> Holding:
    """A cluster of `workers` workers of the given size each; `title` the name people see."""
    return Holding(CLUSTER, backend, name, cores * workers, memory_gb * workers, gpus * workers, workers, title)


def _number(value: float) -> str:
    return f"{value:g}"


def _most_generous(ceilings: list[Ceilings]) -> Ceilings:
    def top(key: str) -> int | None:
        values = [c.get(key) for c in ceilings]
        return None if any(v is None for v in values) else max(values)  # type: ignore[type-var]

    return Ceilings(**{key: top(key) for key in QUOTA_KEYS})


def quota_for(fac: Facility, groups: Iterable[str], is_admin: bool = False) -> Quota | None:
    """The user's quota: the most generous of their groups' (or the default); None means no ceilings."""
    if is_admin or not fac.quotas.any:
        return None
    groups = set(groups)
    mine = [quota for group, quota in fac.quotas.groups.items() if group in groups] or [fac.quotas.default]
    names = {name for quota in mine for name in quota.backends}
    # A quota without ceilings for a backend limits it only through its overall ceilings.
    backends = {n: _most_generous([q.backends.get(n, Ceilings()) for q in mine]) for n in sorted(names)}
    return Quota(overall=_most_generous([q.overall for q in mine]), backends=backends)


def total(holdings: Iterable[Holding], key: str, backend: str | None = None) -> float:
    return sum(h.amount(key) for h in holdings if backend is None or h.backend == backend)


def _scopes(quota: Quota, backend: str) -> list[tuple[Ceilings, str | None]]:
    scopes: list[tuple[Ceilings, str | None]] = [(quota.overall, None)]
    if backend in quota.backends:
        scopes.append((quota.backends[backend], backend))
    return scopes


def excess(
    quota: Quota, before: list[Holding], after: list[Holding], backend: str, keys: Iterable[str] = QUOTA_KEYS
) -> list[str]:
    """Ceilings that `after` passes where it holds more than `before` ("cores: 5 of 4 on all backends").

    A user already over a ceiling (say, the operator lowered it) is not refused what does not add to it.
    """
    found = []
    for ceilings, scope in _scopes(quota, backend):
        for key in keys:
            cap = ceilings.get(key)
            now, then = total(before, key, scope), total(after, key, scope)
            if cap is not None and then > cap and then > now:
                where = "on all backends" if scope is None else f"on {scope!r}"
                found.append(f"{key.replace('_gb', ' (GB)')} {_number(then)} of at most {cap} {where}")
    return found


def held_text(held: list[Holding]) -> str:
    if not held:
        return "You hold nothing else right now."
    return "You hold: " + "; ".join(h.describe() for h in held) + "."


def refusal(quota: Quota | None, held: list[Holding], asked: Holding, action: str) -> str | None:
    """Why `action` (which would add `asked` to what the user holds) exceeds their quota; None if it fits."""
    if quota is None:
        return None
    over = excess(quota, held, [*held, asked], asked.backend)
    if not over:
        return None
    return (
        f"{action} would exceed your quota ({'; '.join(over)}). {held_text(held)} "
        "Stop one of these (or scale a Dask cluster down) and try again."
    )


def scale_refusal(
    quota: Quota | None, others: list[Holding], cluster: Holding, workers: int, per: Holding
) -> str | None:
    """Why scaling `cluster` to `workers` workers of size `per` exceeds the quota; None if it fits.

    `others` is everything else the user holds; only cores, memory and GPUs grow with a scale.
    """
    if quota is None:
        return None
    scaled = cluster_holding(cluster.backend, cluster.name, workers, per.cores, per.memory_gb, per.gpus, cluster.title)
    over = excess(quota, [*others, cluster], [*others, scaled], cluster.backend, RESOURCES)
    if not over:
        return None
    fits = workers_that_fit(quota, others, cluster.backend, per)
    room = "" if fits is None else f" At most {fits} workers of this size fit."
    return (
        f"Scaling Dask cluster {cluster.shown_name} to {workers} workers would exceed your quota "
        f"({'; '.join(over)}).{room} "
        f"{held_text([*others, cluster])} Stop one of these (or scale a Dask cluster down) and try again."
    )


def workers_that_fit(quota: Quota | None, others: list[Holding], backend: str, per: Holding) -> int | None:
    """How many workers of size `per` one cluster on `backend` may have besides `others`; None: no limit."""
    if quota is None:
        return None
    fits: int | None = None
    for ceilings, scope in _scopes(quota, backend):
        for key in RESOURCES:
            cap, each = ceilings.get(key), per.amount(key)
            if cap is None or each <= 0:
                continue
            # A small epsilon so 3 workers of 1/3 core fit in 1 core despite float sums.
            n = max(0, math.floor((cap - total(others, key, scope)) / each + 1e-9))
            fits = n if fits is None else min(fits, n)
    return fits


def without(held: list[Holding], kind: str, name: str) -> list[Holding]:
    return [h for h in held if not (h.kind == kind and h.name == name)]


def per_worker(cores: float, memory_gb: float, gpus: float) -> Holding:
    """The size of one worker, as a Holding (for workers_that_fit and scale_refusal)."""
    return replace(Holding(CLUSTER, "", ""), cores=cores, memory_gb=memory_gb, gpus=gpus, workers=1)


def use_text(quota: Quota | None, held: list[Holding]) -> str:
    """What the user holds against each ceiling of their quota ("cores 3 of 3, clusters 1 of 2")."""
    if quota is None:
        return "no quota"
    parts = []
    for ceilings, scope in [(quota.overall, None), *((c, b) for b, c in quota.backends.items())]:
        used = [
            f"{key.replace('_gb', ' (GB)')} {_number(total(held, key, scope))} of {ceilings.get(key)}"
            for key in QUOTA_KEYS
            if ceilings.get(key) is not None
        ]
        if used:
            parts.append(", ".join(used) + ("" if scope is None else f" on {scope!r}"))
    return "; ".join(parts) or "no ceilings"
