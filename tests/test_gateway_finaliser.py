"""dask_backends.safe_gateway: a Gateway or GatewayCluster garbage-collected on its event-loop
thread does not hang the kernel, and the cluster is still shut down.

With dask-gateway 2026.3.0 the stock classes hang there (docs/upstream/dask-gateway-gc-deadlock.md);
the tests that show it fail once upstream is fixed, so that it is noticed. The reproducer's
technique forces the collection onto the loop thread; every such case runs in a child process with
a time limit, so a hang fails the test instead of hanging it. The clusters run on a real
dask-gateway-server of this module (local processes, any user name), which starts in about a second.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_gateway import BasicAuth, Gateway
from dask_gateway.client import ClusterStatus

from dask_backends.safe_gateway import SafeGateway, SafeGatewayCluster
from tests.harness import free_port_block

# dask_gateway.Gateway.__del__ closes a second time after close() (dask-gateway 2026.3): noise.
pytestmark = [
    pytest.mark.no_facility,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROBE_SECONDS = 6  # a loop that answers does so in milliseconds; one blocked in a finaliser never does
USER = "finaliser"

# The reproducer (docs/upstream/dask_gateway_gc_deadlock.py), for either classes and for a Gateway
# or a started cluster: put one in a reference cycle, collect it on the loop thread, probe the loop.
CHILD = textwrap.dedent(
    """
    import asyncio, gc, logging, os, sys, threading, time
    from dask_gateway import BasicAuth, Gateway
    from distributed.utils import LoopRunner
    from dask_backends.safe_gateway import SafeGateway

    logging.basicConfig(level=logging.INFO)  # dask_backends.safe_gateway says when it closes without waiting
    classes, what, address, proxy_port, user, probe_seconds = sys.argv[1:7]
    Kind = SafeGateway if classes == "safe" else Gateway
    keeper = Kind(address=address, proxy_address=int(proxy_port), auth=BasicAuth(user))
    loop = keeper.loop

    class Cycle:
        pass

    def make_garbage():
        cycle = Cycle()
        cycle.me = cycle  # only the cyclic collector frees it
        if what == "cluster":
            cycle.it = keeper.new_cluster(shutdown_on_close=True)
            print("cluster", cycle.it.name, type(cycle.it).__name__, type(cycle.it.gateway).__name__, flush=True)
        else:
            cycle.it = Kind(address=address, loop=loop)

    def collect_on_the_loop_thread():
        gc.collect()
        print("collected on", threading.current_thread().name, flush=True)

    gc.disable()
    make_garbage()
    loop.add_callback(collect_on_the_loop_thread)
    probe = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result="answers"), loop.asyncio_loop)
    try:
        print("loop", probe.result(timeout=float(probe_seconds)), flush=True)
    except TimeoutError:
        print("loop blocked", flush=True)
        os._exit(3)
    # The close runs on the loop; it ends by giving the garbage's share of the loop back.
    deadline = time.monotonic() + 30
    while LoopRunner._all_loops[loop][0] > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("loop users", LoopRunner._all_loops[loop][0], flush=True)
    """
)


def run_child(classes: str, what: str, address: str, proxy_port: int) -> tuple[subprocess.CompletedProcess, float]:
    """The child's outcome and seconds taken; killed (and the test failed) if it outlives every limit."""
    started = time.monotonic()
    try:
        # cwd=ROOT: the child imports this checkout's dask_backends.
        child = subprocess.run(
            [sys.executable, "-c", CHILD, classes, what, address, str(proxy_port), USER, str(PROBE_SECONDS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child hung past its own probe: {exc.stdout!r} {exc.stderr!r}")
    return child, time.monotonic() - started


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port_block(1)}"  # nothing listens there


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(address, proxy port) of a real dask-gateway-server: local processes, any user name."""
    root = tmp_path_factory.mktemp("gateway")
    port = free_port_block(2)
    config = root / "gateway_config.py"
    config.write_text(
        textwrap.dedent(
            f"""
            c.DaskGateway.address = "127.0.0.1:{port}"
            c.Proxy.address = "127.0.0.1:{port + 1}"
            c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
            c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
            c.LocalBackend.clusters_directory = {str(root / "clusters")!r}
            c.ClusterConfig.scheduler_cmd = [{str(BIN / "dask")!r}, "scheduler"]
            c.ClusterConfig.worker_cmd = [{str(BIN / "dask")!r}, "worker"]
            """
        )
    )
    address = f"http://127.0.0.1:{port}"
    with (root / "server.log").open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "dask-gateway-server"), "-f", str(config)], cwd=root, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{address}/api/health", timeout=2):  # noqa: S310 - our own server
                        break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
                    time.sleep(0.2)
            yield address, port + 1
        finally:
            server.terminate()
            server.wait(timeout=60)


@pytest.fixture
def observer(gateway_server: tuple[str, int]) -> Iterator[Gateway]:
    """The test's own view of the gateway, as the same user."""
    address, proxy_port = gateway_server
    with Gateway(address=address, proxy_address=proxy_port, auth=BasicAuth(USER)) as gateway:
        yield gateway


def wait_stopped(gateway: Gateway, name: str, timeout: float = 30) -> ClusterStatus:
    deadline = time.monotonic() + timeout
    while (status := gateway.get_cluster(name).status) not in (ClusterStatus.STOPPED, ClusterStatus.FAILED):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return status


def test_upstream_gateway_collected_on_its_loop_thread_blocks_the_loop() -> None:
    child, _ = run_child("upstream", "gateway", unreachable(), 1)
    assert "loop blocked" in child.stdout and child.returncode == 3, (
        "dask-gateway no longer blocks its loop thread in Gateway.__del__: upstream fixed it, "
        f"dask_backends.safe_gateway may go (report this): {child.stdout!r} {child.stderr[-2000:]!r}"
    )


def test_safe_gateway_collected_on_its_loop_thread_closes_without_blocking() -> None:
    child, seconds = run_child("safe", "gateway", unreachable(), 1)
    assert child.returncode == 0, child.stdout + child.stderr
    lines = child.stdout.splitlines()
    # Collected on the loop thread, the loop still answers, and the garbage's share of it is given back.
    assert lines == ["collected on IO loop", "loop answers", "loop users 1"], child.stdout
    assert "Gateway<http://127.0.0.1:" in child.stderr and "garbage-collected on its event-loop thread" in child.stderr
    assert seconds < 30


def test_upstream_cluster_collected_on_its_loop_thread_blocks_the_loop(
    gateway_server: tuple[str, int], observer: Gateway
) -> None:
    child, _ = run_child("upstream", "cluster", *gateway_server)
    name = child.stdout.split()[1] if child.stdout.startswith("cluster ") else None
    if name:
        observer.stop_cluster(name)  # the hung child could not
    assert "loop blocked" in child.stdout and child.returncode == 3, (
        "dask-gateway no longer blocks its loop thread in GatewayCluster.__del__: upstream fixed it, "
        f"dask_backends.safe_gateway may go (report this): {child.stdout!r} {child.stderr[-2000:]!r}"
    )


def test_safe_cluster_collected_on_its_loop_thread_is_shut_down_without_blocking(
    gateway_server: tuple[str, int], observer: Gateway
) -> None:
    child, seconds = run_child("safe", "cluster", *gateway_server)
    assert child.returncode == 0, child.stdout + child.stderr
    first, *rest = child.stdout.splitlines()
    _, name, cluster_class, gateway_class = first.split()
    assert (cluster_class, gateway_class) == ("SafeGatewayCluster", "SafeGateway")
    assert rest == ["collected on IO loop", "loop answers", "loop users 1"], child.stdout
    # shutdown_on_close: the close scheduled on the loop stopped the cluster, as upstream's close does.
    assert wait_stopped(observer, name) == ClusterStatus.STOPPED
    assert seconds < 60


def test_safe_cluster_finalised_elsewhere_closes_as_upstream(
    gateway_server: tuple[str, int], observer: Gateway
) -> None:
    address, proxy_port = gateway_server
    gateway = SafeGateway(address=address, proxy_address=proxy_port, auth=BasicAuth(USER))
    cluster = gateway.new_cluster(shutdown_on_close=True)
    assert type(cluster) is SafeGatewayCluster and type(cluster.gateway) is SafeGateway
    name = cluster.name
    again = gateway.connect(name)  # shutdown_on_close=False, as upstream's connect
    assert type(again) is SafeGatewayCluster and type(again.gateway) is SafeGateway
    del again  # closes the connection only
    assert observer.get_cluster(name).status == ClusterStatus.RUNNING
    del cluster  # finalised here, on the test's thread: upstream's close, which waits and shuts down
    assert observer.get_cluster(name).status in (ClusterStatus.STOPPING, ClusterStatus.STOPPED)
    assert wait_stopped(observer, name) == ClusterStatus.STOPPED
    gateway.close()


def test_safe_gateway_finalised_elsewhere_runs_upstreams_close(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[Gateway] = []
    upstream_close = Gateway.close

    def recording_close(self: Gateway) -> None:
        closed.append(self)
        upstream_close(self)

    monkeypatch.setattr(Gateway, "close", recording_close)
    gateway = SafeGateway(address=unreachable())
    loop = gateway.loop.asyncio_loop
    assert loop.is_running()
    del gateway  # finalised here, on the test's thread
    gc.collect()
    assert len(closed) == 1 and type(closed[0]) is SafeGateway
    closed.clear()
    assert not loop.is_running()  # upstream's close waited for the loop it started to stop


ERROR_OF_A_SECOND_CLOSE = "Accessing the loop property while the loop is not running is not supported"


def test_a_safe_gateway_closed_before_is_collected_without_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's finaliser closes again after close() and fails on the stopped loop, which Python
    prints as "Exception ignored in Gateway.__del__" into the notebook; ours stays quiet."""
    ignored: dict[str, list[BaseException | None]] = {"Gateway": [], "SafeGateway": []}

    def record(unraisable: Any) -> None:
        # Only errors of the two gateways made here: earlier tests' garbage may be collected meanwhile.
        tb = unraisable.exc_traceback
        while tb is not None:
            mine = tb.tb_frame.f_locals.get("self")
            if id(mine) in made:
                ignored[made[id(mine)]].append(unraisable.exc_value)
                return
            tb = tb.tb_next

    made: dict[int, str] = {}
    monkeypatch.setattr(sys, "unraisablehook", record)
    for kind in (Gateway, SafeGateway):
        with kind(address=unreachable()) as gateway:
            made[id(gateway)] = kind.__name__
        del gateway
        gc.collect()
    assert [str(e) for e in ignored["Gateway"]] == [ERROR_OF_A_SECOND_CLOSE], ignored  # upstream's
    assert ignored["SafeGateway"] == [], ignored


def test_a_cluster_that_fails_to_start_keeps_a_safe_gateway() -> None:
    """A failed start leaves a reference cycle (exception, traceback, future) that the collector may
    free on the loop thread: the cluster's gateway must already be ours then."""
    with pytest.raises(Exception) as caught:  # noqa: B017 - whatever aiohttp says about a closed port
        SafeGatewayCluster(address=unreachable())
    tb, clusters = caught.value.__traceback__, []
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_init_internal":
            clusters.append(tb.tb_frame.f_locals["self"])
        tb = tb.tb_next
    assert clusters and all(type(c.gateway) is SafeGateway for c in clusters)


def test_the_notebook_helpers_hand_out_safe_gateways(
    gateway_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dask_backends.client import gateway

    monkeypatch.setenv("AF_DASK_GATEWAYS", json.dumps({"local": gateway_server[0]}))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    with gateway("local") as gw:
        assert type(gw) is SafeGateway
