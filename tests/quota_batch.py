"""Quota checks shared by the batch backends' quota tests (tests/test_quota_slurm.py,
tests/test_quota_htcondor.py): the same refusals, each read against that batch system's own queue.

`dask_jobs()` and `server_jobs(user)` count the batch jobs of Dask clusters (scheduler and
workers) and of a user's notebook server, as the batch system lists them: a refused request must
leave no job behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from dask_gateway import Gateway, GatewayClusterError, JupyterHubAuth

from tests.batch_helpers import until
from tests.harness import RunningFacility, cluster_title, embedded_raw
from tests.test_quota import refused_spawn


def quota_facility(
    start_facility: Callable[[dict[str, Any]], RunningFacility], backend: dict[str, Any]
) -> RunningFacility:
    """The embedded facility with the batch `backend` beside it; everyone's quota 4 cores, 1 cluster
    and 1 run, across backends."""
    raw = copy.deepcopy(embedded_raw())
    raw["backends"].append(backend)
    raw["hub"]["start_timeout_seconds"] = 90
    raw["quotas"] = {"default": {"cores": 4, "clusters": 1, "runs": 1}}
    return start_facility(raw)


def check_a_second_cluster_is_refused_naming_the_first(
    running: RunningFacility, user: str, held_on: str, asked_on: str, dask_jobs: Callable[[], int]
) -> None:
    """`user` (quota: 1 cluster) holds a cluster of 2 one-core workers on `held_on`; the gateway of
    `asked_on` refuses her a second one, naming the first; no job is submitted for it."""
    auth = JupyterHubAuth(api_token=running.login(user).token())
    with Gateway(running.runtime["gateways"][held_on]["url"], auth=auth) as first_gateway:
        cluster = first_gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
        try:
            cluster.scale(2)
            until(lambda: dask_jobs() == 3, "the scheduler and 2 worker jobs", timeout=120)
            with Gateway(running.runtime["gateways"][asked_on]["url"], auth=auth) as second_gateway:
                with pytest.raises(ValueError, match=f"Starting a Dask cluster on '{asked_on}' would exceed") as no:
                    second_gateway.new_cluster(shutdown_on_close=False)
                assert [c.name for c in second_gateway.list_clusters()] == ([cluster.name] * (asked_on == held_on))
            assert dask_jobs() == 3  # no scheduler job for the refused cluster
            message = str(no.value)
            assert "clusters 2 of at most 1 on all backends" in message, message
            title = cluster_title(first_gateway, cluster.name)  # the name people see, not its id
            assert f"Dask cluster {title} on '{held_on}' (2 workers: 2 cores, 2 GB)" in message, message
        finally:
            cluster.shutdown()


def check_a_scale_up_and_a_server_are_refused_naming_the_cluster(
    running: RunningFacility,
    user: str,
    backend: str,
    server_form: dict[str, str],
    dask_jobs: Callable[[], int],
    server_jobs: Callable[[str], int],
) -> None:
    """`user` (quota: 4 cores) holds a cluster of one 2-core worker on `backend`: its gateway refuses
    a scale-up to 3 workers, and the hub a 3-core server on `backend`, both naming the cluster; no
    job is submitted for either."""
    session = running.login(user)
    auth = JupyterHubAuth(api_token=session.token())
    with Gateway(running.runtime["gateways"][backend]["url"], auth=auth) as gateway:
        cluster = gateway.new_cluster(worker_cores=2, worker_memory_gb=1)
        try:
            cluster.scale(1)
            until(lambda: dask_jobs() == 2, "the scheduler and 1 worker job", timeout=120)
            # 3 workers of 2 cores: within the backend's 4 workers, past the user's 4 cores
            with pytest.raises(GatewayClusterError, match="At most 2 workers of this size fit") as refused:
                cluster.scale(3)
            held = f"Dask cluster {cluster_title(gateway, cluster.name)} on '{backend}' (1 workers: 2 cores, 1 GB)"
            assert held in str(refused.value), str(refused.value)
            assert dask_jobs() == 2  # no worker job for the refused scale-up
            message = refused_spawn(session, {**server_form, "cores": 3})
            assert f"Starting a notebook server on '{backend}' would exceed your quota (cores 5 of at most 4" in message
            assert f"You hold: {held}" in message, message
            assert server_jobs(user) == 0 and session.server() is None
        finally:
            cluster.shutdown()
