"""Dask schedulers, workers and nannies listen where their backend needs them, never on every interface.

On the embedded facility (local backend) every listening socket of a user's cluster is on
loopback, and the cluster still computes. Batch jobs (Slurm, HTCondor) run their commands through
backends.common.node_address, which binds a real scheduler and worker to the node's address.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from dask_gateway import Gateway, JupyterHubAuth
from distributed import Client

from backends.common.node_address import bound, node_address
from backends.htcondor.gateway import HTCondorBackend
from backends.slurm.gateway import FacilitySlurmBackend
from tests.harness import RunningFacility

# dask_gateway.Gateway.__del__ closes a second time after close() (dask-gateway 2026.3): noise.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)


def listening(pid: int) -> set[str]:
    """The addresses (ip:port) a process listens on."""
    connections = psutil.Process(pid).net_connections(kind="inet")
    return {f"{c.laddr.ip}:{c.laddr.port}" for c in connections if c.status == psutil.CONN_LISTEN}


def hosts(addresses: set[str]) -> set[str]:
    return {address.rsplit(":", 1)[0] for address in addresses}


def cluster_listen_hosts(client: Client) -> set[str]:
    """The hosts a cluster's scheduler, workers and nannies listen on (its processes run on this machine)."""
    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    nannies = [w.parent() for w in workers if "worker" in " ".join(w.parent().cmdline())]
    pids = [client.run_on_scheduler(os.getpid), *(p.pid for p in workers + nannies)]
    return {host for pid in pids for host in hosts(listening(pid))}


def test_local_cluster_listens_on_loopback_only(embedded: RunningFacility) -> None:
    session = embedded.login("bind-alice")
    with Gateway(embedded.runtime["gateways"]["local"]["url"], auth=JupyterHubAuth(api_token=session.token())) as gw:
        cluster = gw.new_cluster(worker_cores=1, worker_memory_gb=1)
        try:
            cluster.scale(1)
            with cluster.get_client(set_as_default=False) as client:
                client.wait_for_workers(1, timeout=90)
                assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
                scheduler = client.run_on_scheduler(os.getpid)
                workers = list(client.run(os.getpid).values())
            nannies = [psutil.Process(pid).parent() for pid in workers]
            assert all("worker" in " ".join(n.cmdline()) for n in nannies), "a worker without its nanny"
            sockets = {
                "scheduler": listening(scheduler),
                **{f"worker {pid}": listening(pid) for pid in workers},
                **{f"nanny {n.pid}": listening(n.pid) for n in nannies},
            }
        finally:
            cluster.shutdown()
    # The scheduler serves TLS, its dashboard and its gateway API; each worker and nanny at least one.
    assert len(sockets["scheduler"]) >= 3 and all(sockets.values()), sockets
    assert {name: hosts(found) for name, found in sockets.items()} == {name: {"127.0.0.1"} for name in sockets}


@pytest.mark.parametrize("backend_class", [FacilitySlurmBackend, HTCondorBackend])
def test_batch_jobs_bind_to_their_node(backend_class: type) -> None:
    """The commands a jobqueue backend submits go through backends.common.node_address."""
    backend = backend_class()
    config = backend.cluster_config_class(scheduler_cmd=["dask", "scheduler"], worker_cmd=["dask", "worker"])
    cluster = SimpleNamespace(config=config, scheduler_address="tls://10.1.2.3:8786")
    wrapper = ["python", "-m", "backends.common.node_address"]
    scheduler = backend.get_scheduler_command(cluster)
    worker = backend.get_worker_command(cluster, "w1")
    assert scheduler[:4] == [*wrapper, "--"] and "0.0.0.0" in scheduler  # filled in on the node
    assert worker[:6] == [*wrapper, "--towards", "tls://10.1.2.3:8786", "--"]
    assert worker[worker.index("--host") + 1] == "0.0.0.0"
    on_node = bound(worker, "10.9.9.9")
    assert on_node[on_node.index("--host") + 1] == "10.9.9.9"
    assert on_node[on_node.index("--dashboard-address") + 1] == "10.9.9.9:0"
    assert not any(arg.startswith("0.0.0.0") for arg in bound(scheduler + worker, "10.9.9.9"))


@pytest.fixture
def bound_scheduler(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    scheduler_file = tmp_path / "scheduler.json"
    wrapped = [sys.executable, "-m", "backends.common.node_address", "--", "dask", "scheduler"]
    args = ["--host", "0.0.0.0", "--port", "0", "--dashboard-address", "0.0.0.0:0"]
    process = subprocess.Popen([*wrapped, *args, "--scheduler-file", str(scheduler_file)], stderr=subprocess.DEVNULL)
    try:
        yield process, scheduler_file
    finally:
        process.terminate()
        process.wait(30)


def test_node_address_binds_a_real_scheduler_and_worker(bound_scheduler: tuple[subprocess.Popen, Path]) -> None:
    scheduler, scheduler_file = bound_scheduler
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    node = node_address()
    with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
        address = client.scheduler.address
        wrapped = [sys.executable, "-m", "backends.common.node_address", "--towards", address, "--"]
        worker_args = ["dask", "worker", address, "--host", "0.0.0.0", "--dashboard-address", "0.0.0.0:0"]
        worker = subprocess.Popen([*wrapped, *worker_args, "--no-nanny"], stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            sockets = {"scheduler": listening(scheduler.pid), "worker": listening(worker.pid)}
        finally:
            worker.terminate()
            worker.wait(30)
    assert len(sockets["scheduler"]) == 2 and len(sockets["worker"]) == 2, sockets
    assert {name: hosts(found) for name, found in sockets.items()} == {"scheduler": {node}, "worker": {node}}
    assert address.startswith(f"tcp://{node}:")
