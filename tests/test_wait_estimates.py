"""The predicted wait of batch backends (issue 20), against a real Slurm and a real HTCondor pool
through the hub's API (hub_config/wait_api.py): Slurm's own prediction for the notebook job a
request would submit, HTCondor's matching slots, the spawn progress of a pending job, refusals
and plain messages when the scheduler is down. The form in a browser: tests/test_browser_wait.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.batch_helpers import spawn_form, wait_gone
from tests.harness import RunningFacility
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster
from tests.wait_helpers import (
    WAIT_API,
    ask,
    ask_until,
    batch,
    claim_condor_slot,
    exporter_samples,
    fill_slurm_node,
)

pytestmark = pytest.mark.batch_daemons

__all__ = ["batch"]  # the module fixture from tests/wait_helpers.py (slurm and pool come from conftest)

CPU = {"backend": "hpc", "queue": "cpu", "cores": "2", "memory_gb": "1", "walltime_hours": "1"}
GPU = {**CPU, "queue": "gpu", "gpus": "2", "gpu_type": "a100"}
GRID = {"backend": "grid", "queue": "group_physics", "cores": "1", "memory_gb": "1", "walltime_hours": "1"}


def _free_slots(answer: dict) -> int:
    match = re.match(r"starts now: (\d+) matching slots? free", answer["summary"])
    assert match, answer
    return int(match.group(1))


def test_slurm_predicts_a_later_start_behind_a_job_that_fills_the_node(batch: RunningFacility, slurm: SlurmCluster):
    alice = batch.login("alice")
    empty = ask_until(alice, "now", **CPU)
    assert empty["summary"].startswith("starts now: Slurm would start it at once"), empty
    assert "GPUs free now: a100 2 of 2" in empty["details"], empty
    filler = fill_slurm_node(slurm)
    try:
        behind = ask_until(alice, "wait", **CPU)
        # The filler holds every CPU for an hour: Slurm's own prediction is the end of its time limit.
        assert 50 * 60 <= behind["seconds"] <= 61 * 60, behind
        pattern = r"expected to start in about (\d+ min|1 h( \d+ min)?) \(Slurm estimate, at \d\d:\d\d\)"
        assert re.fullmatch(pattern, behind["summary"]), behind
        gpus = ask_until(alice, "wait", **GPU)
        assert "GPUs free now: a100 1 of 2" in gpus["details"], gpus
        assert "only 1 GPU of type a100 free, you ask for 2" in gpus["details"], gpus
    finally:
        slurm.run("scancel", filler)
    assert ask_until(alice, "now", **CPU)["seconds"] == 0


def test_slurm_says_what_it_cannot_run(batch: RunningFacility) -> None:
    bob = batch.login("bob")
    # facility.yaml offers h100, this Slurm has only a100s; the `down` partition is closed.
    h100 = ask(bob, **{**GPU, "gpus": "1", "gpu_type": "h100"})
    assert h100["state"] == "never" and "Slurm cannot run this request" in h100["summary"], h100
    assert "no GPU of type h100 free" in h100["details"], h100
    closed = ask(bob, **{**CPU, "queue": "down"})
    assert closed == {**closed, "state": "never"} and "partition down is closed (DOWN)" in closed["summary"]


def test_htcondor_matching_slot_count_drops_when_a_slot_is_claimed(batch: RunningFacility, pool: HTCondorPool):
    carol = batch.login("carol")
    before = _free_slots(ask_until(carol, "now", **GRID))
    job = claim_condor_slot(pool)
    try:
        deadline = time.monotonic() + 60
        while (after := _free_slots(ask(carol, **GRID))) >= before and time.monotonic() < deadline:
            time.sleep(2)  # the collector hears of the claim within UPDATE_INTERVAL; answers are cached 10 s
        assert after == before - 1, (before, after)
    finally:
        pool.run("condor_rm", job)
    # 32 cores: no machine of the pool is that large.
    too_big = ask(carol, **{**GRID, "cores": "32"})
    assert too_big["state"] == "never" and "no slot in the HTCondor pool is large enough" in too_big["summary"]


def test_the_api_refuses_anonymous_callers_and_says_what_is_wrong_with_values(batch: RunningFacility) -> None:
    url = f"{batch.url}/hub/api{WAIT_API}"
    for headers in ({}, {"Authorization": "token not-a-token"}):
        refused = requests.get(url, params=CPU, headers=headers, timeout=30)
        assert refused.status_code == 403, refused.text
        assert "Slurm" not in refused.text and "starts" not in refused.text
    dave = batch.login("dave")
    # Another site's script fetching with dave's cookie, without the hub's XSRF token, is refused.
    cross_site = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}
    assert dave.http.get(url, params=CPU, headers=cross_site, timeout=30).status_code == 403
    bad = dave.api("GET", WAIT_API, params={**CPU, "cores": "99"})
    assert bad.status_code == 400
    assert bad.json()["message"] == "No prediction for these values: cores: 99 is out of range; choose between 1 and 4"
    # A token of dave's that may start servers asks like the form does.
    token = dave.token()
    ok = requests.get(url, params=CPU, headers={"Authorization": f"token {token}"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["backend"] == "hpc", ok.text


def test_a_pending_spawn_shows_slurms_expected_start(batch: RunningFacility, slurm: SlurmCluster) -> None:
    erin = batch.login("erin")
    filler = fill_slurm_node(slurm)
    try:
        reply = erin.post_spawn_form(spawn_form("hpc", "cpu", cores="2"))
        assert reply.status_code == 200, reply.text[-2000:]
        messages = _progress_until(erin, "expected to start in about", timeout=120)
        waiting = [m for m in messages if "waits in the queue" in m]
        assert waiting and "expected to start in about" in waiting[-1], messages
        # The facility exporter counts her spawn as pending on 'hpc', waiting for some seconds now.
        seen = exporter_samples(batch)
        assert seen[("af_pending_spawns", "hpc")] == 1 and seen[("af_pending_spawns", "local")] == 0, seen
        assert seen[("af_pending_spawn_oldest_seconds", "hpc")] > 0, seen
    finally:
        erin.stop_server()
        slurm.run("scancel", filler)
    wait_gone(erin)
    seen = exporter_samples(batch)
    assert seen[("af_pending_spawns", "hpc")] == 0 and seen[("af_pending_spawn_oldest_seconds", "hpc")] == 0, seen


def test_a_scheduler_that_is_down_gives_a_plain_message(batch: RunningFacility, slurm: SlurmCluster) -> None:
    frank = batch.login("frank")
    slurm.stop_controller()
    try:
        down = ask(frank, **CPU)
    finally:
        slurm.start_controller()
    assert down["state"] == "unknown", down
    assert down["summary"].startswith(("Slurm's controller does not answer", "Slurm does not answer")), down
    assert "Traceback" not in json.dumps(down)


def _progress_until(session, text: str, timeout: float) -> list[str]:
    """The spawn's progress messages, read until one contains `text` (or the spawn ends)."""
    reply = session.progress()
    deadline = time.monotonic() + timeout
    messages: list[str] = []
    for line in reply.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            event = json.loads(line[5:])
            messages.append(event.get("message", ""))
            if text in messages[-1] or event.get("ready") or event.get("failed"):
                break
        if time.monotonic() > deadline:
            break
    reply.close()
    return messages
