"""hub_config.start_deadline: a start that runs out of time fails in words, before the hub's own
deadline (whose bare TimeoutError the spawn page shows as "Spawn failed: " and nothing else).
The chart's real case, a pod no node fits, is in tests/test_kube_chart_hub.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from jupyterhub.utils import format_exception

from hub_config import start_deadline

pytestmark = pytest.mark.no_facility


async def never() -> None:
    await asyncio.Event().wait()


def test_a_start_past_its_deadline_fails_in_words_with_the_backends_last_event(monkeypatch) -> None:
    monkeypatch.setattr(start_deadline, "MARGIN_S", 0.05)
    child = SimpleNamespace(events=[{"message": "pulled"}, {"message": "0/3 nodes are available: Insufficient cpu."}])

    async def hub() -> BaseException:
        with pytest.raises(start_deadline.StartTimedOut) as failed:
            # The hub's own wait is the start timeout; ours ends first.
            await asyncio.wait_for(start_deadline.within(never(), 0.3, "Cloud (Kubernetes)", child), 0.3)
        return failed.value

    error = asyncio.run(hub())
    shown, _ = format_exception(error, only_jupyterhub=True)  # what the spawn page shows
    assert shown.startswith("Your server on Cloud (Kubernetes) did not start within 0 seconds, so it was stopped.")
    assert "The last thing it reported: 0/3 nodes are available: Insufficient cpu." in shown


def test_a_start_in_time_is_untouched_and_a_child_without_events_says_no_reason() -> None:
    async def quick() -> tuple[str, int]:
        return "127.0.0.1", 8888

    assert asyncio.run(start_deadline.within(quick(), 5, "here", object())) == ("127.0.0.1", 8888)

    async def late() -> BaseException:
        with pytest.raises(start_deadline.StartTimedOut) as failed:
            await start_deadline.within(never(), 1.0, "This machine", object())  # gives up after 0.9 s
        return failed.value

    assert start_deadline.deadline(600) == 598
    assert start_deadline.deadline(10) == 9
    assert "reported" not in str(asyncio.run(late()))
