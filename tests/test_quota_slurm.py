"""The quota across backends, with a real Slurm (issue 20): what alice holds on Slurm counts
everywhere. Her Dask cluster on the Slurm gateway is named when the local gateway refuses her a
second cluster; the Slurm gateway refuses bob a scale-up past his cores and the hub a Slurm server,
both naming his cluster; her `af run` on Slurm counts while its job runs, and a run past her quota is
refused before any job is submitted. From her notebook server, itself a Slurm job running as her
own account, `af run` is admitted by the hub (POST /hub/api/af/runs; a local server's runs:
tests/test_run_quota_notebook.py) and counts the same way."""

from __future__ import annotations

import pytest

from facility.quota import RUN, Holding
from tests.batch_helpers import account_of, spawn_form, until, write_notebook
from tests.harness import RunningFacility
from tests.notebook_runs import (
    af_run_in_server,
    assert_own_account_cannot_read_the_runtime,
    records,
    runs_of,
    start_run,
    with_server,
)
from tests.quota_batch import (
    check_a_scale_up_and_a_server_are_refused_naming_the_cluster,
    check_a_second_cluster_is_refused_naming_the_first,
    quota_facility,
)
from tests.slurm_cluster import SlurmCluster
from tests.test_quota import UNTIL_GO, WAIT_FOR, af_run_as

pytestmark = [
    pytest.mark.batch_daemons,
    pytest.mark.filterwarnings("ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def hpc(slurm: SlurmCluster, start_facility) -> RunningFacility:
    return quota_facility(start_facility, slurm.backend_entry("hpc"))


def test_a_slurm_cluster_counts_at_the_local_gateway(hpc, slurm) -> None:
    check_a_second_cluster_is_refused_naming_the_first(
        hpc, "alice", held_on="hpc", asked_on="local", dask_jobs=lambda: len(slurm.job_ids("dask-gateway"))
    )
    assert slurm.wait_no_jobs() == []


def test_on_slurm_a_scale_up_and_a_server_past_her_quota_are_refused_naming_her_cluster(hpc, slurm) -> None:
    """The Slurm gateway itself refuses bob's scale-up past his 4 cores, and the hub his Slurm server."""
    check_a_scale_up_and_a_server_are_refused_naming_the_cluster(
        hpc,
        "bob",
        "hpc",
        spawn_form("hpc", "cpu"),
        dask_jobs=lambda: len(slurm.job_ids("dask-gateway")),
        server_jobs=lambda user: len(slurm.job_ids(f"jupyter-{user}")),
    )
    assert slurm.wait_no_jobs() == []


def test_an_af_run_on_slurm_counts_while_its_job_runs(hpc, slurm, tmp_path) -> None:
    go = tmp_path / "go"
    notebook = write_notebook(tmp_path / "wait.ipynb", WAIT_FOR, UNTIL_GO, "print('done')")
    first = af_run_as(hpc, "alice", notebook, tmp_path / "first", "-p", "go", str(go), backend="hpc", wait=False)
    try:
        until(lambda: len(slurm.job_ids("af-run")) == 1 or first.poll() is not None, "the run's Slurm job", 120)
        assert first.poll() is None, first.communicate()
        second = af_run_as(hpc, "alice", notebook, tmp_path / "second", backend="hpc")
        said = " ".join(second.stderr.split())
        assert second.returncode == 1, said
        assert "Starting af run second on 'hpc' would exceed your quota (runs 2 of at most 1" in said
        assert "You hold: af run first on 'hpc' (1 cores, 1 GB)" in said
        assert len(slurm.job_ids("af-run")) == 1  # the refused run submitted nothing
    finally:
        go.touch()
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, out + err
    assert slurm.wait_no_jobs() == []


def test_an_af_run_in_her_slurm_notebook_counts_and_one_past_her_quota_is_refused(hpc, slurm) -> None:
    alice = hpc.login("alice")
    reply = alice.post_spawn_form(spawn_form("hpc", "cpu"))
    assert reply.status_code == 200, reply.text[-2000:]
    try:
        with_server(alice, alice.wait_ready(timeout=120))
        assert len(slurm.job_ids("jupyter-alice")) == 1  # her server is a Slurm job
        assert_own_account_cannot_read_the_runtime(hpc, alice)
        first = start_run(hpc, alice, "first-nb", backend="hpc", timeout=120)
        try:
            (record,) = records(hpc, "alice")
            assert record["name"] == "first-nb" and "lease_until" in record, record  # the hub's record of it
            assert runs_of(hpc, "alice") == [Holding(RUN, "hpc", "first-nb", cores=1, memory_gb=1)]
            until(lambda: len(slurm.job_ids("af-run")) == 1 or first.rc.exists(), "the run's Slurm job", 120)
            assert not first.rc.exists(), first.errors()
            (job,) = slurm.job_ids("af-run")
            owner = account_of("alice")
            assert f"UserId={owner.name}({owner.uid})" in slurm.scontrol("-o", "show", "job", job).stdout
            second = af_run_in_server(alice, "second-nb", backend="hpc")
            said = second["err"]
            assert second["rc"] == 1, second
            assert "Starting af run second-nb on 'hpc' would exceed your quota (runs 2 of at most 1" in said, said
            assert "af run first-nb on 'hpc' (1 cores, 1 GB)" in said, said
            assert "notebook server on 'hpc' (1 cores, 1 GB)" in said, said
            assert len(slurm.job_ids("af-run")) == 1  # the refused run submitted nothing
        finally:
            first.release()
        assert first.wait_ended(timeout=180) == 0, first.errors()
        assert runs_of(hpc, "alice") == [] and records(hpc, "alice") == []  # released with its end
    finally:
        alice.stop_server()
    assert slurm.wait_no_jobs() == []
