"""Session fixtures: real facilities started with `af up` and always stopped with `af down`."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import RunningFacility, embedded_raw, facility_folder, free_port_block, run_af, write_facility
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster, unavailable_reason

StartFacility = Callable[[dict[str, Any]], RunningFacility]


@pytest.fixture(scope="session")
def start_facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartFacility]:
    """Start a facility from a facility.yaml dict on free loopback ports; all are stopped at the end."""
    started: list[RunningFacility] = []
    roots: list[Path] = []

    def start(raw: dict[str, Any]) -> RunningFacility:
        root = facility_folder("facility")
        roots.append(root)
        state = root / "state"
        port = free_port_block()
        raw = {**raw, "hub": {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}"}}
        running = RunningFacility(state, write_facility(root / "facility.yaml", raw))
        started.append(running)
        run_af(state, "up", "--facility", str(running.facility_file), "--port", str(port))
        return running

    yield start
    for running in started:
        # Whatever hub.on_down a test chose: nothing of a test facility outlives the session.
        run_af(running.state_dir, "down", "--sessions", "stop", check=False)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded(start_facility: StartFacility) -> RunningFacility:
    """The embedded facility (local backend) as `make up` starts it, on free ports."""
    return start_facility(embedded_raw())


@pytest.fixture(scope="session")
def workshop(start_facility: StartFacility) -> RunningFacility:
    """The embedded facility with the opt-in shared password of a workshop (auth.shared_password)."""
    raw = embedded_raw()
    return start_facility({**raw, "auth": {**raw["auth"], "shared_password": True}})


@pytest.fixture
def artifacts() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


# The batch daemons, one per test module that asks (test_slurm, test_htcondor, the predicted-wait tests).
@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def pool() -> Iterator[HTCondorPool]:
    pool = HTCondorPool()
    reason = pool.unusable_reason()
    if reason:
        pool.remove_job_dir()
        pytest.skip(reason)
    pool.start()
    yield pool
    pool.stop()
    pool.remove_job_dir()
