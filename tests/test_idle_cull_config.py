"""The idle cullers the hub registers for hub.idle_cull (one per timeout, scoped to its group) and
the groups a login or a spawn gives a user; the culling itself runs in tests/test_idle_culling.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import facility
from af.runtime import StateDir, plan_runtime
from facility.model import IdleCull
from hub_config.idle_groups import post_auth_hook, with_idle_group
from hub_config.services import activity_interval, culler_services

pytestmark = pytest.mark.no_facility

CULL = IdleCull(minutes=120, groups={"workshop": 30, "long": 480, "staff": 0}, check_every_seconds=20)


def test_one_culler_per_timeout_sees_only_its_group(tmp_path: Path) -> None:
    fac = facility.load(facility.embedded_default_path())
    runtime = plan_runtime(fac, facility.embedded_default_path(), StateDir(tmp_path / "state"), port=18000)
    services = {s.name: s for s in culler_services(runtime, CULL)}
    assert set(services) == {"idle-culler", "idle-culler-30m", "idle-culler-480m"}
    workshop = services["idle-culler-30m"]
    assert workshop.command[:3] == (sys.executable, "-m", "jupyterhub_idle_culler")
    assert "--timeout=1800" in workshop.command and "--cull-every=20" in workshop.command
    assert f"--url=http://127.0.0.1:{runtime.ports.hub_api}/hub/api" in workshop.command
    assert set(workshop.scopes) == {
        "list:users!group=af-idle-30m",
        "read:users:activity!group=af-idle-30m",
        "read:servers!group=af-idle-30m",
        "delete:servers!group=af-idle-30m",
    }
    assert culler_services(runtime, IdleCull()) == []  # minutes 0 and no groups: no culler


def test_logins_carry_the_idle_group_of_the_longest_timeout() -> None:
    hook = post_auth_hook(lambda: CULL)
    model = hook(None, None, {"name": "frank", "groups": ["workshop", "long", "af-idle-30m"]})
    assert model["groups"] == ["af-idle-480m", "long", "workshop"]  # a stale idle group is replaced
    assert with_idle_group(["staff", "workshop"], CULL) == ["staff", "workshop"]  # never culled: no group
    assert with_idle_group([], CULL) == ["af-idle-120m"]


def test_servers_report_activity_well_within_the_shortest_timeout() -> None:
    assert activity_interval(CULL) == 300  # 30 min: jupyterhub-singleuser's default is short enough
    assert activity_interval(IdleCull(groups={"workshop": 1})) == 15
    assert activity_interval(IdleCull()) == 300
