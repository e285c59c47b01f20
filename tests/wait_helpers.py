"""What the predicted-wait tests share (tests/test_wait_estimates.py, tests/test_browser_wait.py):
a real Slurm and a real HTCondor pool, a facility with a backend on each, a job that fills the
Slurm node, a job that claims an HTCondor slot, and the hub's wait API as a user calls it."""

from __future__ import annotations

import copy
import subprocess
import time
from typing import Any

import pytest
import requests

from backends.htcondor.submit import parse_submit_output
from tests.batch_helpers import until
from tests.harness import HubSession, RunningFacility, embedded_raw
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster

WAIT_API = "/af/wait-estimate"  # under /hub/api


@pytest.fixture(scope="module")
def batch(slurm: SlurmCluster, pool: HTCondorPool, start_facility) -> RunningFacility:
    """The embedded facility plus `hpc` (Slurm) and `grid` (HTCondor); jobs may wait 3 min in the queue.
    With the facility exporter (metrics), whose pending-spawn gauges a pending spawn is checked against."""
    raw = copy.deepcopy(embedded_raw())
    raw["metrics"] = {"enabled": True, "scrape_interval_seconds": 5}
    hpc, grid = slurm.backend_entry("hpc"), pool.backend_entry("grid")
    hpc["site"]["pending_timeout_seconds"] = grid["site"]["pending_timeout_seconds"] = 180
    raw["backends"] += [hpc, grid]
    raw["hub"]["start_timeout_seconds"] = 240
    return start_facility(raw)


def ask(session: HubSession, **fields: str) -> dict[str, Any]:
    """The hub's predicted wait for these form values, as the form asks it."""
    reply = session.api("GET", WAIT_API, params=fields)
    assert reply.status_code == 200, reply.text
    return reply.json()


def ask_until(session: HubSession, state: str, timeout: float = 60, **fields: str) -> dict[str, Any]:
    """Ask again (answers are cached for a few seconds) until the prediction's state is `state`."""
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = ask(session, **fields)
        if answer["state"] == state:
            return answer
        time.sleep(2)
    raise AssertionError(f"prediction stayed {answer}, expected state {state!r}")


def fill_slurm_node(slurm: SlurmCluster) -> str:
    """A one-hour job holding all 16 CPUs of the node and one of its two a100s, running when this returns."""
    job = slurm.run(
        "sbatch", "--parsable", "--job-name=filler", "--partition=cpu", "--cpus-per-task=16", "--mem=1G",
        "--time=01:00:00", "--gres=gpu:a100:1", "--output=/dev/null", "--wrap=sleep 1200",
    ).stdout.strip()  # fmt: skip
    until(lambda: slurm.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING", "the filler job")
    return job


def claim_condor_slot(pool: HTCondorPool) -> str:
    """A one-core job of the pool's job account, running when this returns."""
    description = "\n".join(
        [
            "executable = /bin/sleep",
            "arguments = 1200",
            "transfer_executable = false",
            "should_transfer_files = NO",
            f"initialdir = {pool.job_dir}",
            "request_cpus = 1",
            "request_memory = 512M",
            "queue",
        ]
    )
    submitted = subprocess.run(
        pool.tool("condor_submit", "-terse"), input=description, capture_output=True, text=True, timeout=60, check=True
    )
    job = parse_submit_output(submitted.stdout)

    def running() -> bool:
        return pool.run("condor_q", job, "-af", "JobStatus").stdout.strip() == "2"

    until(running, f"HTCondor job {job} to run", timeout=90)
    return job


def exporter_samples(running: RunningFacility) -> dict[tuple[str, str], float]:
    """(metric name, backend label) -> value, as the facility exporter answers a scrape now."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = requests.get(f"http://127.0.0.1:{running.runtime['metrics']['exporter_port']}/metrics", timeout=30)
    reply.raise_for_status()
    return {
        (sample.name, sample.labels.get("backend", "")): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }
