"""The shaped link of the data-path benchmark: a real XRootD origin behind toxiproxy (tests/shaped_link.py).

Not a timing test: it checks that the link really adds the round trip it is set to, and that the
ttbar analysis read through it (directly, and through an XCache whose origin is behind the link)
gives exactly the histograms of the same files read from the local disk.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.harness import free_port_block
from tests.shaped_link import ShapedLink, XRootDServer, toxiproxy_dir, toxiproxy_server, work_folder

pytestmark = [
    pytest.mark.no_facility,
    pytest.mark.skipif(
        toxiproxy_server() is None,
        reason=f"toxiproxy is not built in {toxiproxy_dir()} (scripts/bench-install.d/10-toxiproxy.sh builds it)",
    ),
]

EVENTS = 20_000


@pytest.fixture(scope="module")
def link() -> Iterator[dict[str, Any]]:
    from af.data import generate_samples

    work = work_folder("shaped-link")
    lake = work / "lake"
    generate_samples(lake, ("ttbar",), EVENTS, 2, seed=11)
    base = free_port_block()
    with (
        XRootDServer.origin(lake, base, work) as origin,
        ShapedLink(origin.port, api_port=base + 1, listen_port=base + 2, log=work / "toxiproxy.log") as shaped,
    ):
        yield {"work": work, "lake": lake, "origin": origin, "link": shaped, "cache_port": base + 3}
    shutil.rmtree(work, ignore_errors=True)


def _fileset(lake: Path, server: str | None = None) -> dict[str, Any]:
    """The sample's files on the local disk (no server) or on an XRootD server (root://host:port//store/...)."""
    from af.data import read_catalogue

    entry = read_catalogue(lake)["samples"]["ttbar"]
    paths = [f"{server}/{f['path']}" if server else f"{lake}{f['path']}" for f in entry["files"]]
    return {
        "ttbar": {
            "files": dict.fromkeys(paths, entry["tree"]),
            "metadata": {"sample": "ttbar", "xsec_pb": entry["xsec_pb"], "events": entry["events"]},
        }
    }


def _best_ping(url: str, pings: int = 5) -> float:
    from XRootD import client

    filesystem = client.FileSystem(url)
    assert filesystem.ping(timeout=10)[0].ok  # connects (handshake and login), not timed
    times = []
    for _ in range(pings):
        started = time.perf_counter()
        status, _ = filesystem.ping(timeout=10)
        times.append(time.perf_counter() - started)
        assert status.ok, status.message
    return min(times)


@pytest.mark.parametrize("rtt_ms", [10, 50])
def test_link_adds_its_round_trip(link: dict[str, Any], rtt_ms: int) -> None:
    link["link"].shape(rtt_ms=rtt_ms, rate_mbit=1000)
    direct = _best_ping(link["origin"].url)
    shaped = _best_ping(link["link"].url)
    # A ping is one request and one answer: the link's whole round trip, on top of the direct one.
    assert shaped - direct >= 0.9 * rtt_ms / 1000, (direct, shaped)
    assert direct < rtt_ms / 1000 / 2, f"the direct loopback ping took {direct * 1000:.1f} ms"


def test_analysis_through_the_link_equals_local(link: dict[str, Any]) -> None:
    from analyses import ttbar

    link["link"].shape(rtt_ms=10, rate_mbit=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = ttbar.run(_fileset(link["lake"]))
        shaped = ttbar.run(_fileset(link["lake"], link["link"].url))
        with XRootDServer.cache(
            link["work"] / "xcache", link["cache_port"], origin_url=link["link"].url, work=link["work"]
        ) as cache:
            cached = ttbar.run(_fileset(link["lake"], cache.url))
    assert local["events"] == shaped["events"] == cached["events"] == EVENTS
    for other in (shaped, cached):
        assert other["cutflow"] == local["cutflow"]
        assert np.array_equal(other["hist"].values(), local["hist"].values())
        assert np.array_equal(other["hist"].variances(), local["hist"].variances())
    # The cache really fetched through the link: its files are on the cache's disk.
    assert any((link["work"] / "xcache" / "store").rglob("*.root"))
