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
