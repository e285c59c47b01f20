"""The quota across backends, with a real HTCondor pool (issue 20), as tests/test_quota_slurm.py
with Slurm: alice, at her quota of one cluster with a cluster on the HTCondor gateway, is refused a
second there, naming the first; bob, with a 2-core worker of his 4 cores, is refused a scale-up by
the HTCondor gateway and a 3-core HTCondor server by the hub, both naming his cluster; alice's
`af run` on HTCondor counts while its job runs, and a second is refused naming the first. No
HTCondor job is submitted for a refused request."""

from __future__ import annotations

import pytest

from tests.batch_helpers import spawn_form, until, write_notebook
from tests.harness import RunningFacility
from tests.htcondor_pool import HTCondorPool
from tests.quota_batch import (
    check_a_scale_up_and_a_server_are_refused_naming_the_cluster,
    check_a_second_cluster_is_refused_naming_the_first,
    quota_facility,
)
from tests.test_quota import UNTIL_GO, WAIT_FOR, af_run_as

pytestmark = [
    pytest.mark.batch_daemons,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def grid(pool: HTCondorPool, start_facility) -> RunningFacility:
    return quota_facility(start_facility, pool.backend_entry("grid"))


def _dask_jobs(pool: HTCondorPool) -> int:
    return len(pool.jobs_with("DaskGatewayRole", "scheduler") + pool.jobs_with("DaskGatewayRole", "worker"))


def _run_jobs(pool: HTCondorPool) -> int:
    """Jobs of `af run` (their ClassAd has AfRun)."""
    out = pool.run("condor_q", "-allusers", "-af:j", "AfRun").stdout
    return sum(1 for line in out.splitlines() if line.split()[1:] not in ([], ["undefined"]))


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


def test_an_af_run_on_htcondor_counts_while_its_job_runs(grid, pool, tmp_path) -> None:
    folder = pool.job_dir / "quota-runs"  # the job account reads the notebook here (tmp_path is root's alone)
    folder.mkdir()
    go = folder / "go"
    notebook = write_notebook(folder / "wait.ipynb", WAIT_FOR, UNTIL_GO, "print('done')")
    first = af_run_as(grid, "alice", notebook, tmp_path / "first", "-p", "go", str(go), backend="grid", wait=False)
    try:
        until(lambda: _run_jobs(pool) == 1 or first.poll() is not None, "the run's job", 120)
        assert first.poll() is None, first.communicate()
        second = af_run_as(grid, "alice", notebook, tmp_path / "second", backend="grid")
        said = " ".join(second.stderr.split())
        assert second.returncode == 1, said
        assert "Starting af run second on 'grid' would exceed your quota (runs 2 of at most 1" in said, said
        assert "You hold: af run first on 'grid' (1 cores, 1 GB)" in said, said
        assert _run_jobs(pool) == 1 and len(pool.job_ids()) == 1  # the refused run submitted nothing
    finally:
        go.touch()
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, out + err
    _queue_empties(pool)
