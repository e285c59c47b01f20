"""The predicted wait in the spawn form, in a real browser (Debian Chromium driven by Playwright),
against a real Slurm and a real HTCondor pool: the Slurm prediction changes when a job fills the
node and the user changes the size, free GPUs per type, HTCondor's matching slots, and the spawn
progress of a pending job through to JupyterLab (submitted, queued with Slurm's estimate and
reason, running, the server answering, ready; the bar only moves forward). Screenshots go to
test-artifacts/browser-wait/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import RECORD_SPAWN_PROGRESS, chromium_page, emptied_artifacts, log_in, sync_api_or_skip
from tests.harness import RunningFacility
from tests.htcondor_pool import HTCondorPool
from tests.slurm_cluster import SlurmCluster
from tests.wait_helpers import batch, claim_condor_slot, fill_slurm_node

pytestmark = pytest.mark.batch_daemons

__all__ = ["batch"]  # the module fixture from tests/wait_helpers.py (slurm and pool come from conftest)

USER = "wait-user"

sync_api = sync_api_or_skip()


@pytest.fixture(scope="module")
def shots() -> Path:
    return emptied_artifacts("browser-wait")


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    with chromium_page(1280, 1000) as new_page:
        yield new_page


def test_spawn_form_shows_the_schedulers_predicted_wait(
    batch: RunningFacility, slurm: SlurmCluster, pool: HTCondorPool, page, shots: Path
) -> None:
    expect = sync_api.expect
    page.add_init_script(RECORD_SPAWN_PROGRESS)
    log_in(page, batch.url, USER, batch.password_of(USER))
    page.wait_for_selector(".af-spawn-form")
    # The local backend has no scheduler to ask: no prediction box there.
    assert page.locator('fieldset[data-backend="local"] .af-wait').count() == 0

    # Slurm, empty node: starts now, both GPUs free.
    page.click('.af-backend[data-backend="hpc"]')
    hpc = page.locator('.af-wait[data-backend="hpc"]')
    expect(hpc).to_have_attribute("data-state", "now", timeout=30_000)
    expect(hpc).to_contain_text("starts now: Slurm would start it at once")
    expect(hpc).to_contain_text("GPUs free now: a100 2 of 2")
    page.screenshot(path=shots / "01-slurm-starts-now.png", full_page=True)

    filler = fill_slurm_node(slurm)
    try:
        # The user asks for another size: the prediction is asked again and now waits behind the filler.
        page.fill("#af-hpc-cores", "2")
        expect(hpc).to_have_attribute("data-state", "wait", timeout=30_000)
        expect(hpc).to_contain_text(re.compile(r"expected to start in about (\d+ min|1 h)"))
        expect(hpc).to_contain_text("(Slurm estimate, at ")
        page.screenshot(path=shots / "02-slurm-waits-behind-a-job.png", full_page=True)

        # The GPU partition, two a100s: the filler holds one.
        page.select_option("#af-hpc-queue", "gpu")
        page.fill("#af-hpc-gpus", "2")
        page.select_option("#af-hpc-gpu_type", "a100")
        expect(hpc).to_contain_text("only 1 GPU of type a100 free, you ask for 2", timeout=30_000)
        expect(hpc).to_contain_text("GPUs free now: a100 1 of 2")
        page.select_option("#af-hpc-gpu_type", "h100")
        expect(hpc).to_have_attribute("data-state", "never", timeout=30_000)
        expect(hpc).to_contain_text("no GPU of type h100 free")
        page.screenshot(path=shots / "03-slurm-no-h100.png", full_page=True)

        # HTCondor: matching slots, fewer once one is claimed.
        page.click('.af-backend[data-backend="grid"]')
        grid = page.locator('.af-wait[data-backend="grid"]')
        expect(grid).to_have_attribute("data-state", "now", timeout=30_000)
        expect(grid).to_contain_text(re.compile(r"starts now: \d+ matching slots? free"))
        before = int(re.search(r"(\d+) matching", grid.text_content()).group(1))
        job = claim_condor_slot(pool)
        try:
            page.fill("#af-grid-memory_gb", "2")  # another size: asked again
            expect(grid).to_contain_text(f"starts now: {before - 1} matching slots free", timeout=60_000)
            page.screenshot(path=shots / "04-htcondor-matching-slots.png", full_page=True)
        finally:
            pool.run("condor_rm", job)

        # Start on the full Slurm node: the progress page shows Slurm's expected start.
        page.click('.af-backend[data-backend="hpc"]')
        page.select_option("#af-hpc-queue", "cpu")
        page.fill("#af-hpc-gpus", "0")
        page.click('form button[type="submit"]')
        page.wait_for_url(re.compile(r"/hub/spawn-pending/"))
        page.evaluate("document.querySelector('#progress-details').open = true")
        page.wait_for_function(
            "document.querySelector('#progress-log').textContent.includes('expected to start in about')",
            timeout=120_000,
        )
        page.screenshot(path=shots / "05-spawn-pending-with-slurm-estimate.png", full_page=True)

        # The node frees up: the page follows the job through running and answering into JupyterLab.
        slurm.run("scancel", filler)
        try:
            page.wait_for_url(re.compile(rf"/user/{USER}/lab"), timeout=180_000)
            page.wait_for_selector(".jp-Launcher", timeout=120_000)
        except sync_api.TimeoutError:
            page.screenshot(path=shots / "06-FAILED-no-jupyterlab.png", full_page=True)
            raise
        page.screenshot(path=shots / "06-jupyterlab-after-the-wait.png")
        log = page.evaluate("sessionStorage.getItem('afLog') || ''")
        # Each step of a batch start, in order: submitted, queued with Slurm's estimate and reason,
        # running, the server answering, ready.
        steps = (
            "was submitted to Slurm",
            "waits in the queue: expected to start in about",
            "is running",
            "Waiting for your server to answer",
            "Server ready",
        )
        lines = log.splitlines()
        at = [next((i for i, line in enumerate(lines) if step in line), -1) for step in steps]
        assert -1 not in at and at == sorted(at), f"steps {steps} not all in order in the spawn page's log:\n{log}"
        assert re.search(r"waits in the queue: expected to start in about .*\(Slurm's reason: Resources\)", log), log
        values = json.loads(page.evaluate("sessionStorage.getItem('afProgress') || '[]'"))
        assert len(set(values)) >= 4 and values == sorted(values), values  # the bar only moves forward
    finally:
        batch.login(USER).stop_server()
        slurm.run("scancel", filler, check=False)
