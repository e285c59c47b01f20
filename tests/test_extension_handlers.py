"""The JupyterLab panel's server extension (af_dask_lab, /af-dask/...) and the notebook widget,
against the real dask-gateway of the embedded facility.

A real jupyter-server runs the installed extension with a notebook's environment: the user's
JupyterHub token, $AF_DASK_GATEWAYS (the real local gateway plus one that is down) and
facility.yaml. Errors must come back with the gateway's status and message.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness import RunningFacility, embedded_raw, free_port_block, write_facility

pytest.importorskip("af_dask_lab", reason="the lab extension is installed by scripts/install.d/60-lab-extension.sh")
# dask_gateway.Gateway.__del__ closes a second time after close() and trips over its stopped loop
# (dask-gateway 2026.3 with distributed 2026.8): noise at garbage collection, not a failure here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)

SERVER_TOKEN = "af-dask-test-token"


class LabServer:
    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {SERVER_TOKEN}"

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(method, f"{self.url}/af-dask/{path}", json=body, timeout=180)

    def wait_workers(self, backend: str, name: str, count: int, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        cluster: dict[str, Any] = {}
        while time.monotonic() < deadline:
            cluster = self.call("GET", f"clusters/{backend}/{name}").json()
            if cluster.get("workers") == count:
                return cluster
            time.sleep(1)
        raise AssertionError(f"cluster {name} never reached {count} workers: {cluster}")


def notebook_environment(embedded: RunningFacility, tmp: Path) -> dict[str, str]:
    """What FacilitySpawner gives a notebook, plus a backend whose gateway is down."""
    raw = copy.deepcopy(embedded_raw())
    offline = copy.deepcopy(raw["backends"][0])
    offline.update(name="offline", label="Switched-off site")
    raw["backends"].append(offline)
    facility_file = write_facility(tmp / "facility.yaml", raw)
    gateways = {
        "local": embedded.runtime["gateways"]["local"]["url"],
        "offline": f"http://127.0.0.1:{free_port_block(1)}",  # nothing listens there
    }
    return {
        "AF_FACILITY": str(facility_file),
        "AF_DASK_GATEWAYS": json.dumps(gateways),
        "AF_BACKEND": "local",
        "AF_DASK_DASHBOARDS_URL": f"{embedded.url}/services/dask-dashboards",
        "JUPYTERHUB_API_TOKEN": embedded.login("lab-user").token("af-dask-lab test"),
    }


@pytest.fixture(scope="module")
def notebook_env(embedded: RunningFacility, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return notebook_environment(embedded, tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def lab(notebook_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    root = tmp_path_factory.mktemp("lab-root")
    port = free_port_block(1)
    env = {**os.environ, **notebook_env}
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--no-browser",
            f"--ServerApp.token={SERVER_TOKEN}",
            "--ServerApp.allow_root=True",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/api/status", params={"token": SERVER_TOKEN}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            raise AssertionError(f"jupyter server did not start: {(root / 'server.log').read_text()[-3000:]}")
        yield LabServer(url)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_server_extension_is_enabled_and_the_labextension_installed() -> None:
    venv_bin = Path(sys.executable).parent
    servers = subprocess.run([venv_bin / "jupyter", "server", "extension", "list"], capture_output=True, text=True)
    assert "af_dask_lab" in servers.stdout + servers.stderr and "enabled" in servers.stdout + servers.stderr
    labs = subprocess.run([venv_bin / "jupyter", "labextension", "list"], capture_output=True, text=True)
    assert "af-dask-lab v0.1.0" in labs.stdout + labs.stderr


def test_backends_come_from_facility_yaml_and_the_users_gateways(lab: LabServer) -> None:
    reply = lab.call("GET", "backends")
    assert reply.status_code == 200
    backends = {b["name"]: b for b in reply.json()["backends"]}
    assert list(backends) == ["local", "offline"]
    local = backends["local"]
    assert local["label"] == "This machine" and local["workers"] == {"min": 0, "max": 4, "default": 2}
    # The option fields are the gateway's for this user; the gateway that is down leaves facility.yaml's.
    assert local["options_source"] == "gateway" and backends["offline"]["options_source"] == "facility.yaml"
    fields = {o["field"]: o["spec"] for o in local["options"]}
    assert fields["worker_cores"] == {"type": "int", "min": 1, "max": 2}
    assert fields["worker_memory_gb"]["max"] == 4 and "worker_gpus" not in fields  # no GPUs on this backend
    # Unauthenticated requests are refused by jupyter-server itself.
    assert requests.get(f"{lab.url}/af-dask/backends", timeout=30).status_code == 403


def test_cluster_lifecycle_through_the_panel_api(lab: LabServer, notebook_env: dict[str, str]) -> None:
    options = {"worker_cores": 1, "worker_memory_gb": 1, "cluster_name": " ttbar fit "}
    created = lab.call("POST", "clusters", {"backend": "local", "workers": 1, "options": options})
    assert created.status_code == 201, created.text
    cluster = created.json()
    name = cluster["name"]
    try:
        assert cluster["status"] == "RUNNING" and cluster["options"]["worker_memory_gb"] == 1
        # The readable name travels as a cluster option, stored by the gateway; size and limits beside it.
        assert cluster["display_name"] == "ttbar fit" and cluster["backend_label"] == "This machine"
        assert (cluster["worker_cores"], cluster["worker_memory_gb"]) == (1, 1)
        assert cluster["idle_timeout_minutes"] > 0 and cluster["start_time"] > 0
        assert f"gateway('local').connect('{name}')" in cluster["connect_code"]
        lab.wait_workers("local", name, 1)
        # The dashboard link answers its owner (the hub's dashboard service adds the cluster's key).
        assert cluster["dashboard_link"].startswith(f"{notebook_env['AF_DASK_DASHBOARDS_URL']}/local/clusters/")
        owner = {"Authorization": f"token {notebook_env['JUPYTERHUB_API_TOKEN']}"}
        dashboard = requests.get(cluster["dashboard_link"], headers=owner, timeout=30)
        assert dashboard.status_code == 200 and "Dask" in dashboard.text

        # The dashboard's individual plots, for tabs of their own (as dask-labextension opens them).
        plots = {p["label"]: p["url"] for p in lab.call("GET", f"clusters/local/{name}/plots").json()["plots"]}
        assert {"Task Stream", "Progress", "Workers Memory"} <= set(plots), sorted(plots)
        task_stream = requests.get(plots["Task Stream"], headers=owner, timeout=30)
        assert task_stream.status_code == 200 and "bokeh" in task_stream.text.lower()

        scaled = lab.call("PATCH", f"clusters/local/{name}", {"workers": 2})
        assert scaled.status_code == 200, scaled.text
        lab.wait_workers("local", name, 2)
        adaptive = lab.call("PATCH", f"clusters/local/{name}", {"adaptive": {"minimum": 1, "maximum": 3}})
        assert adaptive.status_code == 200, adaptive.text

        # The list has it, and reports the backend that is down beside it instead of failing.
        listing = lab.call("GET", "clusters").json()
        assert name in [c["name"] for c in listing["clusters"]]
        assert [(e["backend"], e["status"]) for e in listing["errors"]] == [("offline", 503)]
        assert "does not answer" in listing["errors"][0]["message"]
    finally:
        stopped = lab.call("DELETE", f"clusters/local/{name}")
    assert stopped.status_code == 204
    assert name not in [c["name"] for c in lab.call("GET", "clusters").json()["clusters"]]


def test_clusters_started_elsewhere_are_listed(lab: LabServer, notebook_env: dict[str, str]) -> None:
    """A cluster started from code (another kernel, an earlier session) shows up in the panel, with
    two readable words as its name when none was given."""
    from dask_gateway import Gateway, JupyterHubAuth

    address = json.loads(notebook_env["AF_DASK_GATEWAYS"])["local"]
    gateway = Gateway(address, auth=JupyterHubAuth(api_token=notebook_env["JUPYTERHUB_API_TOKEN"]))
    name = gateway.submit(worker_cores=1, worker_memory_gb=1)
    try:
        deadline = time.monotonic() + 60
        while name not in (listed := {c["name"]: c for c in lab.call("GET", "clusters").json()["clusters"]}):
            assert time.monotonic() < deadline, f"cluster {name} started from code never listed"
            time.sleep(1)
        assert re.fullmatch(r"[a-z]+-[a-z]+", listed[name]["display_name"]), listed[name]["display_name"]
    finally:
        gateway.stop_cluster(name)
        gateway.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message", "plain"),
    [
        # The gateway's own validation of cluster options, passed through with its status.
        (
            "POST",
            "clusters",
            {"backend": "local", "workers": 0, "options": {"worker_cores": 99}},
            422,
            "worker_cores must be <= 2",
            "Worker cores can be at most 2 cores on This machine.",
        ),
        (
            "POST",
            "clusters",
            {"backend": "local", "workers": 0, "options": {"worker_memory_gb": 16}},
            422,
            "worker_memory_gb must be <= 4",
            "Worker memory can be at most 4 GB on This machine.",
        ),
        (
            "POST",
            "clusters",
            {"backend": "local", "workers": 0, "options": {"cluster_name": "<b>x</b>"}},
            422,
            "cluster_name: '<b>x</b>' is not a usable name",
            "The cluster name '<b>x</b>' cannot be used: use up to 40 letters",
        ),
        ("POST", "clusters", {"backend": "local", "workers": 0, "options": {"cmd": "sh"}}, 422, "Unknown fields", ""),
        (
            "GET",
            "clusters/local/0123456789abcdef",
            None,
            404,
            "Cluster 0123456789abcdef not found",
            "That cluster no longer exists",
        ),
        ("PATCH", "clusters/local/0123456789abcdef", {"workers": 1}, 404, "not found", "no longer exists"),
        # A gateway that is down, a backend the user may not use, limits from facility.yaml.
        (
            "POST",
            "clusters",
            {"backend": "offline", "workers": 0},
            503,
            "does not answer",
            "The Dask service of Switched-off site does not answer.",
        ),
        (
            "POST",
            "clusters",
            {"backend": "physics", "workers": 1},
            404,
            "no backend 'physics' you may use",
            "You may not start Dask clusters on this backend.",
        ),
        (
            "POST",
            "clusters",
            {"backend": "local", "workers": 9},
            400,
            "choose between 0 and 4",
            "Workers can be 0 to 4 on This machine.",
        ),
        ("POST", "clusters", {"backend": "local", "workers": "$(reboot)"}, 400, "is out of range", "0 to 4"),
        (
            "PATCH",
            "clusters/local/0123456789abcdef",
            {"adaptive": {"minimum": 3, "maximum": 1}},
            400,
            "above maximum",
            "above maximum",
        ),
    ],
)
def test_errors_keep_the_gateways_status_and_message(
    lab: LabServer, method, path, body, status, message, plain
) -> None:
    """The gateway's own words in `message` (scripts, logs); the panel's sentence in `plain`, with
    no HTTP status and no field names where a person's words exist."""
    reply = lab.call(method, path, body)
    assert reply.status_code == status, reply.text
    answer = reply.json()
    assert message in answer["message"]
    assert plain in answer["plain"] and str(status) not in answer["plain"] and "dask-gateway" not in answer["plain"]


def test_notebook_widget_creates_scales_and_stops_a_cluster(notebook_env: dict[str, str], monkeypatch) -> None:
    """ClusterWidget, driven as its buttons are, against the real gateway."""
    for key, value in notebook_env.items():
        monkeypatch.setenv(key, value)
    from dask_backends.widget import ClusterWidget

    widget = ClusterWidget()
    assert [v for _, v in widget.backend.options] == ["local", "offline"]
    assert widget.workers.high == 4 and set(widget.option_widgets) == {
        "cluster_name",
        "worker_cores",
        "worker_memory_gb",
        "image",
        "outlive_server",
    }

    widget.backend.value = "offline"
    widget.workers.value = 0
    widget.create_button.click()
    assert "does not answer" in widget.error.value and widget.cluster is None

    widget.backend.value = "local"
    # Full labels (the backend named once) and limits beside each number; a value beyond them is set
    # to the limit, and the widget says so.
    assert dict(widget.backend.options)["This machine"] == "local"
    memory = widget.option_widgets["worker_memory_gb"]
    assert memory.label.value == "Worker memory (GB)" and "1 to 4 GB" in memory.hint.value
    widget.workers.value = 10
    assert (
        widget.workers.value == 4 and "10 asked; This machine allows at most 4, so 4 it is" in widget.workers.hint.value
    )
    with pytest.raises(RuntimeError, match="no cluster yet: press Create"):
        widget.client  # noqa: B018 - the property is the test
    memory.value = 1
    widget.workers.value = 1
    widget.option_widgets["cluster_name"].value = "widget run"
    widget.create_button.click()
    assert widget.error.value == "", widget.error.value
    try:
        assert widget.cluster is not None and widget.stop_button.disabled is False
        assert widget.cluster_name == "widget run" and "widget run" in widget.status.value
        # `.client`: a client of the widget's cluster, made once.
        assert widget.client.submit(sum, [1, 2]).result(timeout=60) == 3 and widget.client is widget.client
        deadline = time.monotonic() + 90
        while "<span class='af-workers'>1</span>" not in widget.status.value:
            assert time.monotonic() < deadline, widget.status.value
            time.sleep(0.5)
        assert "/clusters/" in widget.status.value and "dashboard" in widget.status.value
        widget.workers.value = 2
        widget.scale_button.click()
        deadline = time.monotonic() + 90
        while widget.worker_count() != 2:
            assert time.monotonic() < deadline, widget.status.value
            time.sleep(0.5)
    finally:
        widget.stop_button.click()
    assert widget.cluster is None and "stopped" in widget.status.value and widget.error.value == ""
