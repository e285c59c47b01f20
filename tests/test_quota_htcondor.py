"""The quota across backends, with a real HTCondor pool (issue 20), as tests/test_quota_slurm.py
with Slurm: alice, at her quota of one cluster with a cluster on the HTCondor gateway, is refused a
second there, naming the first; bob, with a 2-core worker of his 4 cores, is refused a scale-up by
the HTCondor gateway and a 3-core HTCondor server by the hub, both naming his cluster. No HTCondor
job is submitted for a refused request."""

from __future__ import annotations

import copy

import pytest

from tests.batch_helpers import spawn_form, until
from tests.harness import RunningFacility, embedded_raw
from tests.htcondor_pool import HTCondorPool
from tests.quota_batch import (
    check_a_scale_up_and_a_server_are_refused_naming_the_cluster,
    check_a_second_cluster_is_refused_naming_the_first,
)

pytestmark = [
    pytest.mark.batch_daemons,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def grid(pool: HTCondorPool, start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["backends"].append(pool.backend_entry("grid"))
    raw["hub"]["start_timeout_seconds"] = 90
    raw["quotas"] = {"default": {"cores": 4, "clusters": 1}}
    return start_facility(raw)


def _dask_jobs(pool: HTCondorPool) -> int:
    return len(pool.jobs_with("DaskGatewayRole", "scheduler") + pool.jobs_with("DaskGatewayRole", "worker"))


def _queue_empties(pool: HTCondorPool) -> None:
    until(lambda: pool.job_ids() == [], "every job to leave the queue", timeout=60)


def test_on_htcondor_a_second_cluster_past_her_quota_is_refused_naming_the_first(grid, pool) -> None:
    check_a_second_cluster_is_refused_naming_the_first(
        grid, "alice", held_on="grid", asked_on="grid", dask_jobs=lambda: _dask_jobs(pool)
    )
    _queue_empties(pool)


def test_on_htcondor_a_scale_up_and_a_server_past_his_quota_are_refused_naming_his_cluster(grid, pool) -> None:
    check_a_scale_up_and_a_server_are_refused_naming_the_cluster(
        grid,
        "bob",
        "grid",
        spawn_form("grid", "group_physics"),
        dask_jobs=lambda: _dask_jobs(pool),
        server_jobs=lambda user: len(pool.jobs_with("JupyterHubUser", user)),
    )
    _queue_empties(pool)
