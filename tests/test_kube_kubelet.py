"""Issue 21, stage 4: a real kubelet on this machine runs pods for the tests' API server.

containerd, runc and the CNI bridge plugin from Debian, the kubelet built with the control plane
(tests/kube_kubelet.py says what it takes on this machine kind). The images are built here from
busybox; the chart's own images are not (issue 24), so the chart's pods are not among them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import requests

from tests.kube_control_plane import ControlPlane, module_control_plane
from tests.kube_dask_gateway import wait_for
from tests.kube_kubelet import SHELL_IMAGE, Kubelet, kubelet, missing

pytestmark = pytest.mark.no_facility

NAMESPACE = "default"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with module_control_plane(tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def node(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelet]:
    absent = missing()
    if absent:
        pytest.fail(absent)  # `make test` installs them: missing is a broken install, not a skip
    with kubelet(plane, tmp_path_factory.mktemp("kubelet")) as running:
        yield running


def pods(plane: ControlPlane, selector: str) -> list[dict[str, Any]]:
    answer = plane.session().get(
        f"{plane.url}/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": selector}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()["items"]


def test_a_deployments_pod_runs_under_the_kubelet_and_answers_at_its_address(
    plane: ControlPlane, node: Kubelet
) -> None:
    http = plane.session()
    account = f"{plane.url}/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"
    wait_for(lambda: http.get(account, timeout=10).status_code == 200, "the default ServiceAccount")
    script = 'echo "served by $POD_NAME" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp'
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    # httpd runs as the container's PID 1, which ignores SIGTERM: SIGKILL soon after.
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "web",
                            "image": SHELL_IMAGE,
                            "imagePullPolicy": "Never",  # built here; no registry can be reached
                            "command": ["/bin/sh", "-c", script],
                            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }
    made = http.post(f"{plane.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments", json=deployment, timeout=10)
    assert made.status_code == 201, made.text

    def ready() -> list[dict[str, Any]]:
        return [
            p
            for p in pods(plane, "app=web")
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]

    (pod,) = wait_for(
        ready, "the pod Ready (its readiness probe answered)", timeout=120, explain=lambda: node.log_tail("kubelet")
    )
    assert pod["spec"]["nodeName"] == node.name
    served = requests.get(f"http://{pod['status']['podIP']}:8080/index.html", timeout=10)
    assert served.text.strip() == f"served by {pod['metadata']['name']}"

    # Removing the Deployment stops the container: its process is gone from this host.
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("//", 1)[1]
    running = [
        p for p in psutil.process_iter(["cmdline"]) if "httpd -f -p 8080 -h /tmp" in " ".join(p.info["cmdline"] or [])
    ]
    assert running, "no httpd process on this host"
    removed = http.delete(
        f"{plane.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web",
        params={"propagationPolicy": "Foreground"},
        timeout=10,
    )
    assert removed.status_code == 200, removed.text
    wait_for(lambda: not pods(plane, "app=web"), "the pod gone", timeout=90)
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running), container_id
