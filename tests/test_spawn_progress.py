"""The spawn page's bar only moves forward, whatever order a backend says its steps in.

A batch job's "submitted" step was once recorded after its first "waits in the queue" (the job id
was set before the step was said), and the bar went from 45 back to 35 in a real browser
(test_browser_wait). FacilitySpawner.progress is what the page reads; here its child says the
steps out of order, deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import Spawner
from jupyterhub.user import User
from traitlets.config import Config

from backends.common.progress import ACCOUNT, QUEUED, RUNNING, SUBMITTED
from hub_config.spawner import FacilitySpawner

pytestmark = pytest.mark.no_facility

OUT_OF_ORDER = [
    (ACCOUNT, "Your Unix account is ready"),
    (QUEUED, "Your notebook job 7 waits in the queue"),
    (SUBMITTED, "Your notebook job 7 was submitted to Slurm"),  # said late
    (RUNNING, "Your notebook job 7 is running"),
]


class LateSayingChild(Spawner):
    """Only its progress is read here; a Spawner subclass must still name the rest."""

    async def start(self) -> tuple[str, int]:
        raise NotImplementedError

    async def stop(self, now: bool = False) -> None:
        raise NotImplementedError

    async def poll(self) -> int | None:
        raise NotImplementedError

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        for progress, message in OUT_OF_ORDER:
            yield {"progress": progress, "message": message}


async def test_the_bar_never_moves_back_and_every_message_is_shown() -> None:
    db = orm.new_session_factory("sqlite:///:memory:")()
    record = orm.User(name="alice")
    db.add(record)
    db.commit()
    parent = FacilitySpawner(user=User(record, settings={}), hub=Hub(), db=db, config=Config())
    parent.user_options = {"backend": parent.facility.backends[0].name, "cores": 1, "memory_gb": 1}
    parent.child_spawner = LateSayingChild(user=parent.user, hub=Hub(), db=db)
    events = []
    async for event in parent.progress():
        events.append(event)
        if "Waiting for your server" in event.get("message", ""):
            break
    bar = [e["progress"] for e in events]
    assert bar == sorted(bar), bar
    assert bar[-1] >= RUNNING
    messages = [e.get("message") for e in events[1:-1]]
    assert messages == [message for _, message in OUT_OF_ORDER]  # the log keeps the backend's words


def test_the_child_really_says_a_later_step_first() -> None:
    """So the test above can fail: without the hub's clamp its bar would go back."""
    bar = [progress for progress, _ in OUT_OF_ORDER]
    assert bar != sorted(bar)
