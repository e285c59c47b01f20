"""Shared fixtures: real facilities started with `af up` and always stopped with `af down`."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ACCOUNT_PREFIX_ENV,
    RunningFacility,
    embedded_raw,
    facility_folder,
    free_port_block,
    run_af,
    with_test_account_prefix,
    write_facility,
)
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster, unavailable_reason


class StartFacility:
    """Starts facilities from facility.yaml dicts on free loopback ports and stops them all with `af down`."""

    def __init__(self) -> None:
        self.started: list[tuple[RunningFacility, Path]] = []

    def __call__(self, raw: dict[str, Any]) -> RunningFacility:
        root = facility_folder("facility")
        state = root / "state"
        port = free_port_block()
        raw = {**with_test_account_prefix(raw), "hub": {**raw.get("hub", {}), "bind_url": f"http://127.0.0.1:{port}"}}
        running = RunningFacility(state, write_facility(root / "facility.yaml", raw))
        self.started.append((running, root))
        run_af(state, "up", "--facility", str(running.facility_file), "--port", str(port))
        return running

    def stop(self, running: RunningFacility) -> None:
        """`af down` for one facility now (before the batch system under it stops)."""
        for entry in [e for e in self.started if e[0] is running]:
            self.started.remove(entry)
            # Whatever hub.on_down a test chose: nothing of a test facility outlives its module.
            run_af(running.state_dir, "down", "--sessions", "stop", check=False)
            shutil.rmtree(entry[1], ignore_errors=True)

    def stop_all(self) -> None:
        for running, _root in list(self.started):
            self.stop(running)


@pytest.fixture(scope="module")
def start_facility() -> Iterator[StartFacility]:
    """Start a facility from a facility.yaml dict; it is stopped when the test module ends.

    Per module, not per session: a session's worth of idle hubs, gateways and caches slowed every
    later test, and their batch systems (module fixtures) were gone before their `af down`. A
    module fixture that needs a batch system names it BEFORE start_facility, so that pytest tears
    the facility down first.
    """
    starter = StartFacility()
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def _session_facilities() -> Iterator[StartFacility]:
    starter = StartFacility()
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def embedded(_session_facilities: StartFacility) -> RunningFacility:
    """The embedded facility (local backend) as `make up` starts it, on free ports; one per session."""
    return _session_facilities(embedded_raw())


@pytest.fixture(scope="module")
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


def started_pool(pool: HTCondorPool, also_missing: str | None = None) -> Iterator[HTCondorPool]:
    """`pool` started for a module and stopped after it, or the module skipped with the reason it
    cannot run here (`also_missing`: what the module needs beyond the pool itself)."""
    reason = pool.unusable_reason() or also_missing
    if reason:
        pool.remove_job_dir()
        pytest.skip(reason)
    pool.start()
    yield pool
    pool.stop()
    pool.remove_job_dir()


@pytest.fixture(scope="module")
def pool() -> Iterator[HTCondorPool]:
    yield from started_pool(HTCondorPool())


@pytest.fixture(scope="module")
def published() -> Path:
    """The images built (or taken from the cache) and published; the CVMFS-like root."""
    from images import build  # only the image tests (`make test-images`) need it

    cache = build.cache_dir()
    assert build.main(["--cache", str(cache)]) == 0
    return build.default_cvmfs_root(cache)


# `make test` runs two pytest-xdist workers, each taking whole scopes. Tests that start a facility
# or a batch system share the host's daemons, so they form three scopes, each run in file order on
# one worker: "batch" (modules marked batch_daemons: the Slurm cluster and the HTCondor pool, which
# one module at a time may hold), "side" (modules marked side_facility: local-backend facility tests
# moved off the long "facility" scope so that both workers finish about together) and "facility"
# (the rest). They may run at once: their facilities create Unix accounts under their own prefixes
# (ACCOUNT_PREFIXES; af-alice, ab-alice, as-alice), so no account is shared. Modules marked
# `no_facility` start none of that and run beside them, each module as one scope so its module
# fixtures are made once. A scheduler of our own, not --dist loadgroup: with pytest 9.2, xdist
# 3.8's group suffix on the node ids no longer takes, and loadgroup silently spread the facility
# tests over both workers.
# A second run on the same host (a developer's, beside a CI run) sets AF_TEST_ACCOUNT_STEM to another
# letter: its prefixes (df-, db-, ds-) then differ from the first run's as well.
_STEM = os.environ.get("AF_TEST_ACCOUNT_STEM", "a")
if len(_STEM) != 1 or not "a" <= _STEM <= "z":
    raise pytest.UsageError(f"AF_TEST_ACCOUNT_STEM must be one lower-case letter, not {_STEM!r}")
ACCOUNT_PREFIXES = {"facility": f"{_STEM}f-", "batch": f"{_STEM}b-", "side": f"{_STEM}s-"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class FacilityScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope_of(nodeid.split("::", 1)[0])

    return FacilityScheduling(config, log)


@functools.cache
def _scope_of(module: str) -> str:
    path = Path(__file__).resolve().parent.parent / module
    text = path.read_text() if path.is_file() else ""
    if "pytest.mark.no_facility" in text:
        return module
    if "pytest.mark.batch_daemons" in text:
        return "batch"
    return "side" if "pytest.mark.side_facility" in text else "facility"


def _runs_beside(module: str) -> bool:
    return _scope_of(module) not in ACCOUNT_PREFIXES


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Facilities (and tests/batch_helpers.account_of) of this test's scope use its account prefix."""
    prefix = ACCOUNT_PREFIXES.get(_scope_of(item.nodeid.split("::", 1)[0]))
    if prefix:
        os.environ[ACCOUNT_PREFIX_ENV] = prefix


# The time of every test phase, summed per module, in test-artifacts/test-times.json: what the
# 45-minute budget of `make test` goes to (pytest's --durations lists only the slowest phases).
# On the xdist controller (or a run without workers), which receives every worker's reports.
_phase_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::", 1)[0]
    _phase_seconds[module] = _phase_seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or not _phase_seconds:
        return
    import json

    by_module = dict(sorted(_phase_seconds.items(), key=lambda item: -item[1]))
    facility = sum(seconds for module, seconds in by_module.items() if not _runs_beside(module))
    by_scope: dict[str, float] = {}
    for module, seconds in by_module.items():
        scope = _scope_of(module) if not _runs_beside(module) else "no_facility"
        by_scope[scope] = by_scope.get(scope, 0.0) + seconds
    summary = {
        "scopes_seconds": {scope: round(seconds, 1) for scope, seconds in by_scope.items()},
        "facility_modules_seconds": round(facility, 1),
        "no_facility_modules_seconds": round(sum(by_module.values()) - facility, 1),
        "modules": {module: round(seconds, 1) for module, seconds in by_module.items()},
    }
    target = Path(__file__).resolve().parent.parent / "test-artifacts" / "test-times.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(summary, indent=1) + "\n")
