"""Notebook servers, Dask clusters and batch notebooks on a real single-node Slurm.

The Slurm (munged, slurmctld, slurmd) is started by tests/slurm_cluster.py; the facility is the
embedded one plus a Slurm backend pointing at it (site.slurm_conf), started with `af up`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shlex
import time
from pathlib import Path

import pytest
import requests
from dask_gateway import Gateway, JupyterHubAuth

from backends.common.node_address import node_address
from tests.batch_helpers import (
    account_of,
    check_gateway_restart_keeps_the_cluster,
    check_hub_restart_keeps_the_job_server,
    check_notebooks_run_as_own_accounts,
    check_private_to,
    check_server_opens_with_the_examples,
    spawn_form,
    spawn_outcome,
    until,
    wait_gone,
    write_notebook,
)
from tests.harness import RunningFacility, embedded_raw
from tests.slurm_cluster import SlurmCluster
from tests.test_listen_hosts import cluster_listen_hosts

pytestmark = pytest.mark.batch_daemons


@pytest.fixture(scope="module")
def hpc(slurm: SlurmCluster, start_facility) -> RunningFacility:
    raw = copy.deepcopy(embedded_raw())
    raw["backends"].append(slurm.backend_entry("hpc"))
    raw["hub"]["start_timeout_seconds"] = 90
    return start_facility(raw)


def _form(**overrides: str) -> dict[str, str]:
    return spawn_form("hpc", "cpu", **overrides)


def _wait_for_job(slurm: SlurmCluster, name: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = slurm.job_ids(name)
        if ids:
            return ids[0]
        time.sleep(0.3)
    raise AssertionError(f"no Slurm job named {name} appeared")


def _job(slurm: SlurmCluster, job_id: str) -> str:
    return slurm.scontrol("-o", "show", "job", job_id).stdout


def test_notebook_server_runs_as_a_slurm_job_and_answers_through_the_hub(hpc, slurm) -> None:
    alice = hpc.login("alice")
    reply = alice.post_spawn_form(_form(cores="2", memory_gb="2", walltime_hours="2"))
    assert reply.status_code == 200, reply.text[-2000:]
    job = _wait_for_job(slurm, "jupyter-alice")
    details = _job(slurm, job)
    assert "Partition=cpu" in details and "NumCPUs=2" in details and "TimeLimit=02:00:00" in details
    assert "mem=2G" in details
    server = alice.wait_ready(timeout=90)
    url, token = f"{alice.url}{server['url']}", alice.token()
    status = requests.get(f"{url}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert status.status_code == 200 and "started" in status.json()
    alice.stop_server()
    assert slurm.wait_no_jobs(timeout=30) == [], "stopping the server left its Slurm job behind"


def test_hub_restart_keeps_the_slurm_job_server(hpc, slurm) -> None:
    """A restarted hub finds ivan's running Slurm job again (issue 15): same job, server answers."""
    check_hub_restart_keeps_the_job_server(hpc, "ivan", _form(), lambda: slurm.job_ids("jupyter-ivan"))


def test_notebook_server_opens_with_the_examples_pulled_from_the_hub(hpc, slurm) -> None:
    """The Slurm job's server pulls ~/examples over HTTP from the hub as it starts."""
    check_server_opens_with_the_examples(hpc, "judy", _form())
    assert slurm.wait_no_jobs(timeout=30) == []


def test_notebook_jobs_run_as_each_users_own_account(hpc, slurm) -> None:
    """Slurm runs alice's and bob's notebook jobs as af-alice and af-bob: bob cannot read alice's token."""
    check_notebooks_run_as_own_accounts(hpc, _form())
    assert slurm.wait_no_jobs(timeout=30) == []


def test_gpu_request_reaches_slurm_as_gres(hpc, slurm) -> None:
    bob = hpc.login("bob")
    reply = bob.post_spawn_form(_form(queue="gpu", gpus="2", gpu_type="a100"))
    assert reply.status_code == 200, reply.text[-2000:]
    details = _job(slurm, _wait_for_job(slurm, "jupyter-bob"))
    assert "Partition=gpu" in details
    assert "gres:gpu:a100:2" in details
    bob.stop_server()
    assert slurm.wait_no_jobs() == []


def test_job_slurm_refuses_gives_a_clear_message_and_a_clean_hub(hpc, slurm) -> None:
    carol = hpc.login("carol")
    # facility.yaml offers h100, but this Slurm's only node has a100s: sbatch refuses the job.
    reply = carol.api(
        "POST", "/users/carol/server", json={"user_options": _form(queue="gpu", gpus="1", gpu_type="h100")}
    )
    assert reply.status_code in (201, 202), reply.text
    outcome = spawn_outcome(carol)
    assert outcome.get("failed"), outcome
    assert "Slurm refused the notebook job" in outcome["message"]
    assert "Requested node configuration is not available" in outcome["message"]
    wait_gone(carol)
    # The hub is clean: the next spawn is accepted and reaches Slurm at once.
    reply = carol.api("POST", "/users/carol/server", json={"user_options": _form()})
    assert reply.status_code in (201, 202), reply.text
    _wait_for_job(slurm, "jupyter-carol")
    carol.stop_server()
    assert slurm.wait_no_jobs() == []


def test_job_pending_too_long_is_cancelled_with_a_clear_message(hpc, slurm) -> None:
    dave = hpc.login("dave")
    reply = dave.api("POST", "/users/dave/server", json={"user_options": _form(queue="down")})
    assert reply.status_code in (201, 202), reply.text
    job = _wait_for_job(slurm, "jupyter-dave")
    outcome = spawn_outcome(dave, timeout=60)
    assert outcome.get("failed"), outcome
    assert f"notebook job {job} stayed pending in Slurm" in outcome["message"]
    assert "PartitionDown" in outcome["message"]
    assert slurm.job_ids("jupyter-dave") == [], "the pending job was not cancelled"
    wait_gone(dave)


def test_job_killed_while_starting_gives_a_clear_message_and_a_clean_hub(hpc, slurm) -> None:
    erin = hpc.login("erin")
    reply = erin.api("POST", "/users/erin/server", json={"user_options": _form()})
    assert reply.status_code in (201, 202), reply.text
    job = _wait_for_job(slurm, "jupyter-erin")
    slurm.run("scancel", job)
    outcome = spawn_outcome(erin, timeout=60)
    assert outcome.get("failed"), outcome
    assert f"notebook job {job} ended before the notebook server started" in outcome["message"]
    assert "CANCELLED" in outcome["message"]
    wait_gone(erin)
    reply = erin.api("POST", "/users/erin/server", json={"user_options": _form()})
    assert reply.status_code in (201, 202), reply.text
    erin.wait_ready(timeout=90)
    erin.stop_server()
    assert slurm.wait_no_jobs() == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"queue": "cpu\n#SBATCH --wrap=reboot"}, "is not available; choose one of: cpu, gpu, down"),
        ({"gpus": "1", "gpu_type": "a100 --uid=0"}, "is not available; choose one of: a100, h100"),
        ({"memory_gb": "1G;reboot"}, "is not a whole number"),
    ],
)
def test_form_values_with_shell_characters_never_reach_slurm(hpc, slurm, fields, message) -> None:
    frank = hpc.login("frank")
    reply = frank.post_spawn_form(_form(**fields))
    assert reply.status_code == 400
    assert message in reply.text
    assert frank.server() is None
    assert slurm.job_ids() == []


def test_dask_cluster_on_slurm_scales_computes_and_leaves_no_job(hpc, slurm) -> None:
    token = hpc.login("grace").token()
    gateway = Gateway(hpc.runtime["gateways"]["hpc"]["url"], auth=JupyterHubAuth(api_token=token))
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1)
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        assert len(slurm.job_ids("dask-gateway")) == 3  # scheduler + 2 workers
        assert client.submit(sum, range(101)).result(timeout=60) == 5050
        caches = client.run(lambda: __import__("os").environ.get("AF_DATA_CACHE"))
        # Workers read through the backend's data_cache, at the URL the running facility gave it.
        assert set(caches.values()) == {hpc.runtime["data"]["caches"]["local-xcache"]["url"]}
        # Without distributed's nanny's MALLOC_TRIM_THRESHOLD_ (backends.common.cluster_options.WORKER_ENVIRONMENT),
        # looked up in the workers: client.run(os.environ.get, ...) would pickle this process's os.environ.
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
        # Scheduler and workers run as grace's account; her staging folder (TLS key) is hers alone.
        uid = account_of("grace").uid
        assert set(client.run(os.getuid).values()) == {uid} and client.run_on_scheduler(os.getuid) == uid
        staging = hpc.state_dir / "gateways" / "hpc" / "staging" / "grace" / cluster.name
        check_private_to(staging / "dask.pem", "grace", "bob")
        # They listen on the node's address only, not every interface (backends.common.node_address).
        assert cluster_listen_hosts(client) == {node_address()}
        cluster.scale(1)
        until(lambda: len(slurm.job_ids("dask-gateway")) == 2, "scale down to 1 worker")
        cluster.adapt(minimum=2, maximum=3)
        until(lambda: len(slurm.job_ids("dask-gateway")) == 3, "adaptive scaling up to its minimum of 2")
        client.close()
        # A worker job the gateway never recorded (stopped while its sbatch was in flight) goes too.
        sbatch = ["sbatch", f"--job-name=dask-gateway-{cluster.name}", "--partition=cpu", "--wrap=sleep 300"]
        slurm.run(*account_of("grace").setpriv_argv(), *sbatch)
    finally:
        cluster.shutdown()
        gateway.close()
    assert slurm.wait_no_jobs() == [], "stopping the cluster left Slurm jobs behind"
    until(lambda: not staging.exists(), "the cluster's staging folder to be removed", timeout=30)


def test_gateway_restart_keeps_the_slurm_cluster(hpc, slurm) -> None:
    """A restarted hpc gateway reloads olga's Slurm cluster (issue 15): same jobs, still computing."""
    check_gateway_restart_keeps_the_cluster(hpc, "hpc", "olga", lambda: slurm.job_ids("dask-gateway"))


def test_gpu_dask_workers_ask_slurm_for_gres(hpc, slurm) -> None:
    token = hpc.login("heidi").token()
    gateway = Gateway(hpc.runtime["gateways"]["hpc"]["url"], auth=JupyterHubAuth(api_token=token))
    cluster = gateway.new_cluster(worker_cores=1, worker_memory_gb=1, worker_gpus=1)
    try:
        scheduler = _wait_for_job(slurm, "dask-gateway")
        cluster.scale(1)
        until(lambda: len(slurm.job_ids("dask-gateway")) == 2, "a GPU worker job")
        worker = next(j for j in slurm.job_ids("dask-gateway") if j != scheduler)
        assert "gres:gpu:1" in _job(slurm, worker)
        assert "TresPerNode" not in _job(slurm, scheduler)  # the scheduler asks for no GPU
    finally:
        cluster.shutdown()
        gateway.close()
    assert slurm.wait_no_jobs() == []


# Job command and batch script generation (no daemons needed).


def _site_facility(runtime: str, site: dict | None = None):
    import facility
    from tests.harness import ROOT

    fac = facility.load(str(ROOT / "examples" / "site-facility.yaml"))
    backend = dataclasses.replace(fac.backend("hpc"), container_runtime=runtime, site=site or {})
    return fac, backend


def test_job_command_runs_inside_the_images_cvmfs_path_with_apptainer() -> None:
    from backends.slurm.scripts import job_argv, job_command

    fac, backend = _site_facility("apptainer", {"apptainer_binds": ["/scratch"]})
    image = fac.image("coffea-2026")
    argv = job_argv(fac, backend, image, ["dask", "worker", "tls://10.0.0.1:8786"], gpus=1)
    assert argv == [
        "apptainer", "exec", "--nv", "--bind", "/scratch",
        "/cvmfs/unpacked.cern.ch/registry.example.org/analysis-facility/notebook:2026.9",
        "dask", "worker", "tls://10.0.0.1:8786",
    ]  # fmt: skip
    line = job_command(fac, backend, image, ["echo", "$(reboot); `id`"])
    assert line.endswith("notebook:2026.9 echo '$(reboot); `id`'")
    assert "--nv" not in line  # no GPU asked for: no driver binding


def test_job_command_without_container_uses_the_configured_environment() -> None:
    from backends.slurm.scripts import job_argv

    fac, backend = _site_facility("none", {"environment": "/opt/af-env"})
    image = fac.image("coffea-2026")
    assert job_argv(fac, backend, image, ["dask", "scheduler", "--port", "0"]) == [
        "/opt/af-env/bin/dask", "scheduler", "--port", "0",
    ]  # fmt: skip
    fac, backend = _site_facility("none")
    assert job_argv(fac, backend, image, ["/usr/bin/env", "x"]) == ["/usr/bin/env", "x"]


def _script(**overrides: object) -> str:
    from backends.slurm.scripts import render_notebook_script

    values = {
        "job_name": "jupyter-alice",
        "log_file": "/jobs/alice/slurm-%j.log",
        "workdir": "/jobs/alice",
        "nprocs": "2",
        "memory": "4G",
        "runtime": "02:00:00",
        "partition": "gpu",
        "account": "af-users",
        "gres": "gpu:a100:1",
        "site_options": ["--qos=normal"],
        "command": shlex.join(["jupyterhub-singleuser", "--ServerApp.root_dir=$HOME; reboot"]),
    }
    return render_notebook_script({**values, **overrides})


def test_batch_script_carries_the_request_and_quotes_the_command() -> None:
    script = _script()
    expected = [
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=02:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=af-users",
        "#SBATCH --gres=gpu:a100:1",
        "#SBATCH --qos=normal",
        "exec jupyterhub-singleuser '--ServerApp.root_dir=$HOME; reboot'",
    ]
    for line in expected:
        assert line in script.splitlines(), line


@pytest.mark.parametrize(
    "overrides",
    [
        {"job_name": "jupyter-alice\n#SBATCH --uid=0"},
        {"job_name": "jupyter-$(reboot)"},
        {"partition": "cpu --wrap=reboot"},
        {"gres": "gpu:1;reboot"},
        {"workdir": "/jobs/a b"},
        {"site_options": ["--export=ALL `id`"]},
    ],
)
def test_username_or_values_with_shell_characters_cannot_change_the_batch_script(overrides) -> None:
    from backends.slurm.scripts import BatchScriptError

    with pytest.raises(BatchScriptError, match="may not be written on an #SBATCH line"):
        _script(**overrides)


def test_slurm_notebook_job_runs_in_the_chosen_image_with_apptainer() -> None:
    import facility
    from backends.slurm.spawner import slurm_child_config

    fac, backend = _site_facility("apptainer", {"slurm_conf": "/etc/slurm x/slurm.conf", "account": "af-users"})
    options = {"backend": "hpc", "image": "coffea-2026-gpu", "queue": "gpu", "gpus": 2, "gpu_type": "h100"}
    request = facility.validate_spawn(fac, options, set(), is_admin=True)
    config = slurm_child_config(fac, backend, request, "alice", "/home/{username}", {"environment": {}})
    assert config["job_prefix"] == [
        "apptainer", "exec", "--nv",
        "/cvmfs/unpacked.cern.ch/registry.example.org/analysis-facility/notebook-gpu:2026.9",
    ]  # fmt: skip
    assert config["cmd"] == ["af-singleuser"]  # the image's own
    assert config["req_gres"] == "gpu:h100:2" and config["req_partition"] == "gpu"
    assert config["req_account"] == "af-users" and config["job_workdir"] == "/home/alice"
    assert config["exec_prefix"] == "env SLURM_CONF='/etc/slurm x/slurm.conf'"
    assert config["environment"]["AF_DATA_CACHE"] == "root://xcache.hpc.example.org:1094"


def test_batch_spawners_take_the_account_from_facility_yaml_and_keep_it_across_hub_restarts() -> None:
    from backends.common.batch_spawner import account_settings
    from backends.slurm.spawner import FacilitySlurmSpawner
    from facility.accounts import Account
    from facility.model import UnixAccounts

    fac, _ = _site_facility("none")
    assert account_settings(fac, ["/srv/c"]) == {
        "account_prefix": "af-", "account_group": "af-users", "account_chroots": ["/srv/c"],
    }  # fmt: skip
    shared = dataclasses.replace(fac, auth=dataclasses.replace(fac.auth, unix_accounts=UnixAccounts("shared")))
    assert account_settings(shared, ["/srv/c"]) == {}  # shared mode: the hub's own user, as before
    # The account is part of the spawner's state: after a hub restart the job is still queried
    # and cancelled as its owner, from its home folder.
    alice = Account("alice", "af-alice", 2001, 2002, Path("/home/af-alice"))
    spawner = FacilitySlurmSpawner(job_workdir="/jobs/alice")
    spawner.account = alice
    restored = FacilitySlurmSpawner(job_workdir="/jobs/alice")
    restored.load_state(spawner.get_state())
    assert restored.account == alice and restored.job_workdir == "/home/af-alice"
    assert restored.user_env({})["HOME"] == "/home/af-alice"


def test_af_run_on_slurm_returns_the_executed_notebook(hpc, slurm, tmp_path) -> None:
    cell = "import os\nprint('ANSWER', x * 2, 'JOB', os.environ['SLURM_JOB_ID'])"
    notebook = write_notebook(tmp_path / "double.ipynb", "x = 1", cell)
    result = hpc.af("run", str(notebook), "--backend", "hpc", "-p", "x", "21", "--run-dir", str(tmp_path / "run"))
    job = re.search(r"Submitted double.ipynb as Slurm job (\d+)", result.stderr)
    assert job, result.stderr
    executed = (tmp_path / "run" / "double.ipynb").read_text()
    assert f"ANSWER 42 JOB {job.group(1)}" in executed  # ran with the parameter, inside that Slurm job
    assert "Executing" in (tmp_path / "run" / "run.log").read_text()  # papermill's log from the job
    assert slurm.job_ids() == []


def test_af_run_on_slurm_of_a_failing_notebook_exits_non_zero(hpc, slurm, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "fails.ipynb", "n = 0", "print('before'); 1 / n")
    result = hpc.af("run", str(notebook), "--backend", "hpc", "--run-dir", str(tmp_path / "run"), check=False)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "ended FAILED (exit code 1)" in message and "ZeroDivisionError" in message
    assert "ZeroDivisionError" in (tmp_path / "run" / "run.log").read_text()
    assert (tmp_path / "run" / "fails.ipynb").exists()  # papermill keeps the notebook up to the failing cell
    assert slurm.job_ids() == []


def test_slurm_controller_down_gives_a_clear_message_and_a_clean_hub(hpc, slurm) -> None:
    ivan = hpc.login("ivan")
    slurm.stop_controller()
    try:
        reply = ivan.api("POST", "/users/ivan/server", json={"user_options": _form()})
        assert reply.status_code in (201, 202), reply.text
        outcome = spawn_outcome(ivan, timeout=60)
        assert outcome.get("failed"), outcome
        assert "Slurm's controller does not answer, so your notebook job was not submitted" in outcome["message"]
        wait_gone(ivan)
    finally:
        slurm.start_controller()
    reply = ivan.api("POST", "/users/ivan/server", json={"user_options": _form()})
    assert reply.status_code in (201, 202), reply.text
    _wait_for_job(slurm, "jupyter-ivan")
    ivan.stop_server()
    assert slurm.wait_no_jobs() == []
