"""The real hub, proxy and dask-gateways started by `af up`: form, validation, spawn, Dask, isolation."""

from __future__ import annotations

import copy
import json
import re

import pytest
import requests

from tests.harness import HubSession, RunningFacility, embedded_raw, execute_in_kernel

pytestmark = pytest.mark.side_facility


@pytest.fixture(scope="module")
def two_backends(start_facility) -> RunningFacility:
    """The embedded facility plus a second local backend only the group 'physics' may use."""
    raw = copy.deepcopy(embedded_raw())
    restricted = copy.deepcopy(raw["backends"][0])
    restricted.update(name="physics-only", label="Physics group node", allowed_groups=["physics"])
    restricted["resources"]["cores"] = {"default": 1, "min": 1, "max": 1}
    raw["backends"].append(restricted)
    raw["auth"]["groups"] = {"physics": ["carol"]}
    return start_facility(raw)


def _backend_choices(form: str) -> list[str]:
    return re.findall(r'name="backend" value="([^"]+)"', form)


def test_form_renders_the_backends_a_user_may_use(two_backends: RunningFacility) -> None:
    carol_form = two_backends.login("carol").spawn_form()
    assert _backend_choices(carol_form) == ["local", "physics-only"]
    assert "Physics group node" in carol_form and "This machine" in carol_form
    assert 'name="cores"' in carol_form and 'max="2"' in carol_form
    # no backend here has GPUs: the field is not shown (the form's script may still name it)
    assert not re.search(r'<input[^>]*name="gpus"', carol_form)
    assert _backend_choices(two_backends.login("dave").spawn_form()) == ["local"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "local", "cores": "5", "memory_gb": "2"}, "cores: 5 is out of range; choose between 1 and 2"),
        ({"backend": "local", "cores": "1", "memory_gb": "$(reboot)"}, "memory_gb: &#39;$(reboot)&#39; is not a whole"),
        ({"backend": "physics-only", "cores": "1", "memory_gb": "2"}, "you may not use &#39;physics-only&#39;"),
    ],
)
def test_bad_form_values_are_refused_and_nothing_spawns(two_backends: RunningFacility, fields, message) -> None:
    erin = two_backends.login("erin")
    reply = erin.post_spawn_form(fields)
    assert reply.status_code == 400
    assert message in reply.text
    assert erin.server() is None


def test_crafted_api_requests_are_refused_and_nothing_spawns(two_backends: RunningFacility) -> None:
    frank = two_backends.login("frank")
    for options, message in [
        ({"backend": "physics-only"}, "you may not use 'physics-only'"),
        ({"backend": "local", "memory_gb": 512}, "memory_gb: 512 is out of range"),
        ({"backend": "local", "cmd": ["/bin/sh"]}, "unknown option 'cmd'"),
    ]:
        reply = frank.api("POST", "/users/frank/server", json={"user_options": options})
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["message"]
        assert frank.server() is None
    # The refusals left the hub clean: a valid request starts at once.
    reply = frank.api("POST", "/users/frank/server", json={"user_options": {"backend": "local"}})
    assert reply.status_code in (201, 202), reply.text
    frank.wait_ready()
    frank.stop_server()


def _start_notebook(session: HubSession, backend: str = "local") -> tuple[str, str]:
    reply = session.post_spawn_form({"backend": backend, "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = session.wait_ready()
    assert server["user_options"]["backend"] == backend
    return f"{session.url}{server['url']}", session.token()


def test_spawned_notebook_server_answers_its_api_through_the_proxy(two_backends: RunningFacility) -> None:
    alice = two_backends.login("alice")
    url, token = _start_notebook(alice)
    status = requests.get(f"{url}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert status.status_code == 200 and "started" in status.json()
    kernelspecs = requests.get(f"{url}api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=30)
    assert "python3" in kernelspecs.json()["kernelspecs"]
    # Another user's token cannot reach alice's server.
    bob_token = two_backends.login("bob").token()
    denied = requests.get(f"{url}api/status", headers={"Authorization": f"token {bob_token}"}, timeout=30)
    assert denied.status_code == 403


NOTEBOOK_CLUSTER = """
from dask_backends import new_cluster, available_backends
print("BACKENDS", sorted(available_backends()))
cluster = new_cluster("local", workers=2, worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
client = cluster.get_client()
client.wait_for_workers(2, timeout=120)
import dask.array as da
total = da.arange(1_000_000, chunks=100_000).sum().compute()
print("CLUSTER", cluster.name)
print("TOTAL", int(total))
print("WORKERS", len(client.scheduler_info()["workers"]))
"""


def test_notebook_starts_a_dask_cluster_through_the_gateway(two_backends: RunningFacility) -> None:
    grace = two_backends.login("grace")
    url, token = _start_notebook(grace)
    out = execute_in_kernel(url, token, NOTEBOOK_CLUSTER)
    assert "BACKENDS ['local']" in out  # grace is not in 'physics': its gateway is not offered
    assert "TOTAL 499999500000" in out and "WORKERS 2" in out
    cluster = re.search(r"CLUSTER (\S+)", out).group(1)

    # A second user can neither list, connect to nor stop grace's cluster.
    heidi = two_backends.login("heidi")
    heidi_url, heidi_token = _start_notebook(heidi)
    attempt = f"""
from dask_backends import gateway
gw = gateway("local")
print("LISTED", [c.name for c in gw.list_clusters()])
for action in ("connect", "stop"):
    try:
        gw.connect({cluster!r}) if action == "connect" else gw.stop_cluster({cluster!r})
        print("ALLOWED", action)
    except Exception as exc:
        print("REFUSED", action, type(exc).__name__)
"""
    out = execute_in_kernel(heidi_url, heidi_token, attempt)
    assert "LISTED []" in out
    assert "REFUSED connect" in out and "REFUSED stop" in out and "ALLOWED" not in out
    # grace's cluster survived heidi's stop attempt; grace stops it herself.
    out = execute_in_kernel(
        url,
        token,
        f"from dask_backends import gateway\ngw = gateway('local')\n"
        f"print('MINE', [c.name for c in gw.list_clusters()])\ngw.stop_cluster({cluster!r})\n"
        f"print('AFTER', [c.name for c in gw.list_clusters()])",
    )
    assert f"MINE ['{cluster}']" in out and "AFTER []" in out


def test_gateway_refuses_a_backend_outside_the_users_groups(two_backends: RunningFacility) -> None:
    ivan = two_backends.login("ivan")
    url, token = _start_notebook(ivan)
    gateways = json.loads(execute_in_kernel(url, token, "import os; print(os.environ['AF_DASK_GATEWAYS'])"))
    assert list(gateways) == ["local"]
    restricted = two_backends.runtime["gateways"]["physics-only"]["url"]
    code = f"""
from dask_gateway import Gateway
try:
    Gateway({restricted!r}, auth="jupyterhub").new_cluster()
    print("ALLOWED")
except Exception as exc:
    print("REFUSED", exc)
"""
    out = execute_in_kernel(url, token, code)
    assert "REFUSED" in out and "may not start clusters on 'physics-only'" in out
