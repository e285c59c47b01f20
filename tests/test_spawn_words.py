"""What the spawn form and the home page say, from examples/site-facility.yaml (all four kinds):
the backend card's place named once, the lifetime note's values, sizes and ages in words, and
the remembered options after a spawn."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import facility
from facility.validation import SpawnRequest
from hub_config.server_summary import age_words
from hub_config.spawn_words import kind_badge, lifetime_lines, size_words
from hub_config.spawner import remembered_answer, render_form

pytestmark = pytest.mark.no_facility

SITE = Path(__file__).resolve().parent.parent / "examples" / "site-facility.yaml"


def test_the_card_names_where_a_backend_runs_once() -> None:
    fac = facility.load(SITE)
    embedded = facility.load(Path(__file__).resolve().parent.parent / "facility" / "embedded.yaml")
    assert kind_badge(embedded.backend("local")) == ""  # "This machine" needs no "this machine" badge
    assert kind_badge(fac.backend("cloud")) == ""  # "Cloud (Kubernetes)" already says "cloud"
    assert kind_badge(fac.backend("tier2")) == "grid / HTCondor"
    assert kind_badge(fac.backend("hpc")) == "HPC / Slurm"


def test_lifetime_lines_use_the_facilitys_values() -> None:
    fac = facility.load(SITE)
    hpc = lifetime_lines(fac, fac.backend("hpc"))
    assert hpc[0].startswith("Idle servers stop: after 2 hours with no open JupyterLab tab")
    assert hpc[1].startswith("Wall time: the scheduler ends your server when the wall time you choose")
    idle = fac.backend("hpc").dask.idle_timeout_minutes
    assert str(idle // 60 if idle % 60 == 0 else idle) in hpc[2]
    assert lifetime_lines(fac, fac.backend("cloud"))[1] == "Wall time: none on this backend."


def test_sizes_and_ages_in_words() -> None:
    assert size_words({"cores": 1, "memory_gb": 2}) == "1 core, 2 GB memory"
    assert (
        size_words({"cores": 4, "memory_gb": 16, "gpus": 2, "gpu_type": "a100", "walltime_hours": 8})
        == "4 cores, 16 GB memory, 2 GPUs (a100), 8 h wall time"
    )
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert age_words(now - timedelta(seconds=20), now) == "started less than a minute ago"
    assert age_words((now - timedelta(minutes=125)).replace(tzinfo=None), now) == "started 2 h 5 min ago"


def test_the_form_is_filled_in_with_the_remembered_options() -> None:
    fac = facility.load(SITE)
    backends = list(fac.backends)
    first = SpawnRequest(backend="hpc", image="coffea-2026", cores=2, memory_gb=5, queue="gpu", walltime_hours=3)
    remembered = remembered_answer({}, first)
    second = SpawnRequest(backend="tier2", image="coffea-2026", cores=1, memory_gb=3)
    remembered = remembered_answer(remembered, second)
    assert remembered["backend"] == "tier2" and set(remembered["options"]) == {"hpc", "tier2"}
    form = render_form(fac, backends, remembered)
    assert 'name="backend" value="tier2" checked' in form
    hpc = form[form.index('<fieldset data-backend="hpc"') :]
    hpc = hpc[: hpc.index("</fieldset>")]
    assert re.search(r'id="af-hpc-memory_gb"[^>]*value="5"', hpc) and re.search(r'id="af-hpc-cores"[^>]*value="2"', hpc)
    assert '<option value="gpu" selected>' in hpc and "disabled" in hpc.split(">")[0]  # not the chosen one
    assert "Filled in with your choices from last time." in form
    fresh = render_form(fac, backends)
    assert 'name="backend" value="login" checked' in fresh and "Filled in" not in fresh
