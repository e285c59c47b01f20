"""ttbar.run preloads a chunk's branches for files read over a network, not through a cache on this
machine (benchmarks/xcache_sweep.py --warm-check: preloading made warm cache runs slower and gained
nothing cold; direct from a distant origin it stays the faster way). No servers: the choice only."""

from __future__ import annotations

from typing import Any

import pytest

from analyses import ttbar
from dask_backends import failover
from dask_backends.data import through_local_cache

pytestmark = pytest.mark.no_facility

CACHE, ORIGIN = "root://127.0.0.1:41004", "root://lake.example.org:1094"
PATH = "/store/af/generated/ttbar/g1/ttbar_000.root"


@pytest.fixture(autouse=True)
def _no_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "_routes", {})
    monkeypatch.delenv("AF_DATA_CACHE", raising=False)
    monkeypatch.delenv("AF_DATA_ORIGIN", raising=False)


def test_a_loopback_cache_with_the_origin_behind_it_is_local() -> None:
    assert not through_local_cache(f"{CACHE}/{PATH}")  # nothing known behind it: could be an origin
    failover.register_route([CACHE, ORIGIN])
    assert through_local_cache(f"{CACHE}/{PATH}")
    assert not through_local_cache(f"{ORIGIN}/{PATH}")
    assert not through_local_cache(PATH) and not through_local_cache(f"/tmp/lake{PATH}")


def test_a_cache_on_another_host_is_not_local() -> None:
    failover.register_route(["root://xcache.example.org:1094", ORIGIN])
    assert not through_local_cache(f"root://xcache.example.org:1094/{PATH}")


def test_dask_workers_know_the_cache_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AF_DATA_CACHE", CACHE)
    monkeypatch.setenv("AF_DATA_ORIGIN", ORIGIN)
    assert through_local_cache(f"{CACHE}/{PATH}")


def _traced(monkeypatch: pytest.MonkeyPatch, urls: list[str], **options: Any) -> bool:
    """Whether ttbar.run asked coffea's Runner to trace (and preload) for these files."""
    seen: dict[str, Any] = {}

    class Runner:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def __call__(self, fileset: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            seen.update(kwargs)
            return {}, {}

    monkeypatch.setattr(ttbar.processor, "Runner", Runner)
    meta = {"sample": "ttbar", "xsec_pb": 1.0, "genWeight_sum": 1.0, "genWeight_sign_sum": 1.0}
    ttbar.run({"ttbar": {"files": dict.fromkeys(urls, "Events"), "metadata": meta}}, **options)
    return "trace" in seen


def test_ttbar_run_preloads_only_away_from_a_local_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    failover.register_route([CACHE, ORIGIN])
    assert _traced(monkeypatch, [f"{ORIGIN}/{PATH}"])
    assert not _traced(monkeypatch, [f"{CACHE}/{PATH}"])
    assert _traced(monkeypatch, [f"{CACHE}/{PATH}", f"{ORIGIN}/{PATH}"])  # some files from afar
    assert not _traced(monkeypatch, [f"/tmp/lake{PATH}"])
    assert _traced(monkeypatch, [f"{CACHE}/{PATH}"], preload=True)
    assert not _traced(monkeypatch, [f"{ORIGIN}/{PATH}"], preload=False)
