"""Usage accounting's arithmetic and its store (facility.usage, facility.usage_report), without a
facility: held × elapsed per user, backend, kind and UTC day; the cap on unseen time; restarts and
two writers that count no second twice; sums by user, group and backend. tests/test_usage.py runs
the sampler, `af usage` and the hub page on a real facility."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from facility.quota import CLUSTER, RUN, SERVER, Holding, cluster_holding
from facility.usage import (
    CAP_INTERVALS,
    UsageStore,
    UsageUnavailable,
    UserHoldings,
    counted_seconds,
    day_spans,
    held_rates,
)
from facility.usage_report import NO_GROUP, checked_day, overall, totals

pytestmark = pytest.mark.no_facility

NOON = dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC).timestamp()
SERVER_2 = Holding(SERVER, "local", "", cores=2, memory_gb=4)
GPU_SERVER = Holding(SERVER, "hpc", "gpu", cores=1, memory_gb=8, gpus=1)
CLUSTER_3 = cluster_holding("local", "c1", 3, 1, 2, 0)  # 3 workers of 1 core, 2 GB


def alice(*held: Holding, groups: tuple[str, ...] = ("physics",)) -> dict[str, UserHoldings]:
    return {"alice": UserHoldings(groups, held)}


def amounts(store: UsageStore) -> dict[tuple[str, str, str, str], tuple[float, float, float]]:
    return {
        (r.day, r.user, r.backend, r.kind): (r.core_seconds, r.memory_gb_seconds, r.gpu_seconds) for r in store.rows()
    }


def test_a_step_counts_the_time_since_the_last_sample_at_most_two_intervals() -> None:
    assert counted_seconds(None, NOON, 60) == 0  # the first sample: nothing before it was seen
    assert counted_seconds(NOON - 59.5, NOON, 60) == 59.5
    assert counted_seconds(NOON - 3600, NOON, 60) == CAP_INTERVALS * 60  # the sampler was down: not made up
    assert counted_seconds(NOON + 5, NOON, 60) == 0  # the clock went back


def test_a_step_over_midnight_is_cut_into_its_utc_days() -> None:
    midnight = dt.datetime(2026, 3, 6, tzinfo=dt.UTC).timestamp()
    assert day_spans(midnight - 20, midnight + 40) == [("2026-03-05", 20.0), ("2026-03-06", 40.0)]
    assert day_spans(NOON, NOON) == []


def test_holdings_add_up_per_backend_and_kind_and_empty_ones_are_left_out() -> None:
    empty_cluster = cluster_holding("local", "c2", 0, 1, 2, 0)  # scaled to 0 workers: holds nothing
    rates = held_rates([SERVER_2, CLUSTER_3, empty_cluster, GPU_SERVER, Holding(RUN, "local", "r", 1, 2)])
    assert rates == {
        ("local", SERVER): (2, 4, 0),
        ("local", CLUSTER): (3, 6, 0),
        ("hpc", SERVER): (1, 8, 1),
        ("local", RUN): (1, 2, 0),
    }


def test_held_times_elapsed_is_recorded_per_user_backend_kind_and_day(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.sqlite")
    assert store.record(alice(SERVER_2, CLUSTER_3, GPU_SERVER), NOON, 10) == 0  # the first sample
    assert store.record(alice(SERVER_2, CLUSTER_3, GPU_SERVER), NOON + 10, 10) == 10
    assert store.record(alice(SERVER_2), NOON + 15, 10) == 5  # the cluster stopped in between
    assert amounts(store) == {
        ("2026-03-05", "alice", "local", SERVER): (30, 60, 0),
        ("2026-03-05", "alice", "local", CLUSTER): (30, 60, 0),
        ("2026-03-05", "alice", "hpc", SERVER): (10, 80, 10),
    }
    assert store.last_sample() == NOON + 15
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_time_the_sampler_did_not_see_is_capped(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.sqlite")
    store.record(alice(SERVER_2), NOON, 10)
    assert store.record(alice(SERVER_2), NOON + 3600, 10) == 20  # down for an hour: 2 intervals counted
    assert amounts(store)[("2026-03-05", "alice", "local", SERVER)] == (40, 80, 0)


def test_a_restarted_or_second_sampler_counts_no_second_twice(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite"
    UsageStore(path).record(alice(SERVER_2), NOON, 10)
    UsageStore(path).record(alice(SERVER_2), NOON + 10, 10)
    restarted = UsageStore(path)  # a new process: the last sample's time comes from the file
    assert restarted.record(alice(SERVER_2), NOON + 10, 10) == 0  # the same moment again: nothing
    assert restarted.record(alice(SERVER_2), NOON + 14, 10) == 4
    other = UsageStore(path)  # two samplers at once share the time between them
    assert other.record(alice(SERVER_2), NOON + 16, 10) == 2
    assert restarted.record(alice(SERVER_2), NOON + 20, 10) == 4
    assert amounts(restarted)[("2026-03-05", "alice", "local", SERVER)] == (40, 80, 0)  # 20 s of 2 cores


def test_a_sample_that_fails_half_way_records_neither_amounts_nor_time(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.sqlite")
    store.record(alice(SERVER_2), NOON, 10)
    broken = {**alice(SERVER_2), "bob": UserHoldings((), (None,))}  # type: ignore[arg-type]  # fails after alice's row
    with pytest.raises(AttributeError):
        store.record(broken, NOON + 10, 10)
    assert store.last_sample() == NOON and store.rows() == []
    assert store.record(alice(SERVER_2), NOON + 10, 10) == 10
    assert amounts(store)[("2026-03-05", "alice", "local", SERVER)] == (20, 40, 0)


def test_reading_before_anything_was_recorded_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageUnavailable, match=r"no usage has been recorded yet \(.*usage.sqlite does not exist\)"):
        UsageStore(tmp_path / "usage.sqlite").rows()


def test_sums_by_user_group_and_backend_in_hours(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.sqlite")
    everyone = {
        **alice(SERVER_2, GPU_SERVER, groups=("physics", "students")),
        "bob": UserHoldings(("students",), (CLUSTER_3,)),
        "carol": UserHoldings((), (SERVER_2,)),
    }
    store.record(everyone, NOON, 3600)
    store.record(everyone, NOON + 1800, 3600)  # half an hour
    store.record({}, NOON + 86400, 3600)  # the next day's sample, after nothing was held
    rows = store.rows()
    by_user = {t.key: (t.core_hours, t.memory_gb_hours, t.gpu_hours) for t in totals(rows, "user")}
    assert by_user == {"alice": (1.5, 6, 0.5), "bob": (1.5, 3, 0), "carol": (1, 2, 0)}
    by_group = {t.key: t.core_hours for t in totals(rows, "group")}
    assert by_group == {"students": 3, "physics": 1.5, NO_GROUP: 1}  # alice counts for both of hers
    assert [t.key for t in totals(rows, "backend")] == ["local", "hpc"]
    assert overall(rows).core_hours == 4
    assert totals(store.rows(since="2026-03-06"), "user") == []
    assert {r.user for r in store.rows(users={"bob"})} == {"bob"}
    with pytest.raises(ValueError, match="'kind' is not a way to sum usage; choose one of user, group, backend"):
        totals(rows, "kind")


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "2026-3-5x", ""])
def test_a_day_is_written_year_month_day(text: str) -> None:
    with pytest.raises(ValueError, match="is not a date; write it like 2026-03-05"):
        checked_day(text)
    assert checked_day("2026-03-05") == "2026-03-05"


# --- `af usage` on a state folder with a runtime.json and recorded usage (no processes) ----------


def _af_usage(state: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from af.cli import main

    result = CliRunner().invoke(main, ["--state-dir", str(state), "usage", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state folder as `af up` leaves it (runtime.json), before the sampler's first sample."""
    import facility
    from af.runtime import StateDir, plan_runtime, write_runtime

    folder = StateDir(tmp_path / "state")
    folder.root.mkdir()
    fac = facility.load(facility.embedded_default_path())
    write_runtime(folder, plan_runtime(fac, facility.embedded_default_path(), folder, port=18000))
    return folder.root


def test_af_usage_prints_the_table_and_draws_the_plot(state: Path) -> None:
    from facility.usage import usage_path

    store = UsageStore(usage_path(state))
    everyone = {**alice(SERVER_2, CLUSTER_3), "bob": UserHoldings((), (GPU_SERVER,))}
    store.record(everyone, NOON, 3600)
    store.record(everyone, NOON + 1800, 3600)
    code, out = _af_usage(state, "--plot", str(state / "usage.png"))
    assert code == 0, out
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "Usage by user, all recorded (last sample 2026-03-05 12:30:00 UTC, one every 60 s)" in lines
    assert "alice 2.500 5.000 0.000" in lines and "bob 0.500 4.000 0.500" in lines and "all 3.000 9.000 0.500" in lines
    assert (state / "usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out = _af_usage(state, "--by", "group", "--since", "2026-03-05")
    assert code == 0 and "physics" in out and "(no group)" in out, out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--since", "2026-3-5x"), "Invalid value for '--since': '2026-3-5x' is not a date; write it like 2026-03-05"),
        (("--by", "kind"), "Invalid value for '--by': 'kind' is not one of 'user', 'group', 'backend'"),
        (("--plot", "u.svg"), "Invalid value for '--plot': u.svg does not end in .png; the plot is a PNG image"),
        (("--plot", "/no/such/folder/u.png"), "Invalid value for '--plot': the folder /no/such/folder does not exist"),
        ((), "no usage has been recorded yet"),
    ],
)
def test_af_usage_says_what_is_wrong(state: Path, args: tuple[str, ...], said: str) -> None:
    code, out = _af_usage(state, *args)
    assert code != 0 and said in " ".join(out.split()), out


def test_af_usage_before_any_use_and_on_a_facility_never_started(state: Path, tmp_path: Path) -> None:
    from facility.usage import usage_path

    UsageStore(usage_path(state)).record({}, NOON, 60)  # the sampler ran; nobody held anything
    code, out = _af_usage(state)
    assert code == 1 and "error: no usage recorded yet: nobody held a server, worker or run then" in out, out
    code, out = _af_usage(state, "--since", "2026-03-06")
    assert code == 1 and "no usage recorded since 2026-03-06" in out, out
    code, out = _af_usage(tmp_path / "elsewhere")
    assert code == 1 and f"no facility has been started in {tmp_path / 'elsewhere'}; run `af up` first" in out, out
