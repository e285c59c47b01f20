"""The chart's hub, started for real on this host from the chart's rendered objects.

The hub pod runs `jupyterhub -f /etc/analysis-facility/jupyterhub_config_k8s.py` with the
`analysis-facility-config` ConfigMap and the runtime Secret mounted. Here the same files go to a
temporary folder, and a small wrapper config loads the chart's, then changes only what the pod's
network gives it: the Service names and fixed ports become loopback ports this test reserved, the
hub starts its own configurable-http-proxy (the chart runs it in a pod of its own), and a `tests`
service holds an admin token to create users and their tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.harness import free_port_block
from tests.kube_dask_gateway import chart_object, secret_value, wait_for
from tests.kube_helpers import ROOT
from tests.spawn_events import final_event, progress_stream

JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")


@dataclass
class RunningHub:
    url: str
    api_url: str
    admin_token: str
    log: Path
    state: Path  # the hub's state folder (the pod's volume): its database, the usage record

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=15, **kwargs)

    def user_token(self, name: str) -> str:
        """A new user of the hub (if not yet there) and a token of theirs, as they would make on /hub/token."""
        made = self.api("POST", f"/users/{name}")
        assert made.status_code in (201, 409), made.text
        token = self.api("POST", f"/users/{name}/tokens", json={"note": "tests"})
        assert token.status_code == 201, token.text
        return token.json()["token"]

    def spawn_message(self, name: str, token: str, options: dict[str, Any], timeout: float = 60) -> str:
        """The user starts their server with these form values (REST, their own token): the hub's
        refusal at once, or the last message of the spawn's progress when it fails after a 202."""
        headers = {"Authorization": f"token {token}"}
        reply = requests.post(f"{self.api_url}/users/{name}/server", json=options, headers=headers, timeout=30)
        if reply.status_code >= 400:  # refused, or failed within the hub's slow_spawn_timeout
            return str(reply.json().get("message", reply.text))
        assert reply.status_code in (201, 202), reply.text
        url = f"{self.api_url}/users/{name}/server/progress"
        progress = progress_stream(lambda: requests.get(url, headers=headers, stream=True, timeout=timeout))
        assert progress.status_code == 200, f"the spawn's progress: {progress.status_code} {progress.text}"
        last = final_event(progress, timeout)
        assert last.get("failed"), last
        return str(last.get("message", ""))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def chart_hub(
    chart: list[dict[str, Any]],
    folder: Path,
    gateway_urls: dict[str, str],
    kubeconfig: Path,
    hub_address: str = "127.0.0.1",
) -> Iterator[RunningHub]:
    """The chart's hub (its ConfigMap's config and facility.yaml, its runtime Secret) on loopback,
    its API for servers on `hub_address`;
    `gateway_urls`: where each backend's gateway answers here (in the cluster: its Service);
    `kubeconfig`: the hub ServiceAccount's token (in the pod, mounted by Kubernetes);
    `hub_address`: where notebook servers reach the hub's API (in the cluster: its Service),
    an address of this host that real pods can reach (tests.kube_kubelet.Kubelet.host_address)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = chart_object(chart, "ConfigMap", "analysis-facility-config")["data"]
    runtime = json.loads(secret_value(chart_object(chart, "Secret", "af-hub-runtime"), "runtime.json"))
    for name in ("facility.yaml", "jupyterhub_config_k8s.py"):
        (folder / name).write_text(config[name])
    (folder / "state").mkdir(exist_ok=True)
    public, hub, proxy_api = free_port_block(), free_port_block(), free_port_block()
    runtime.update(facility_file=str(folder / "facility.yaml"), state_dir=str(folder / "state"))
    runtime["ports"].update(public=public, hub_api=hub, proxy_api=proxy_api)
    for name, url in gateway_urls.items():
        runtime["gateways"][name]["url"] = url
    (folder / "runtime.json").write_text(json.dumps(runtime))
    admin_token = secrets.token_hex(32)
    wrapper = folder / "jupyterhub_config.py"
    wrapper.write_text(
        f"""\
c = get_config()  # noqa: F821
load_subconfig({str(folder / "jupyterhub_config_k8s.py")!r})  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://{hub_address}:{hub}"
c.JupyterHub.hub_connect_url = "http://{hub_address}:{hub}"
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.JupyterHub.services.append({{"name": "tests", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "tests-admin", "services": ["tests"], "scopes": ["admin:users", "admin:servers", "tokens"]}}
)
"""
    )
    # The hub pod's environment (its Deployment), less the Service names replaced above.
    hub_container = chart_object(chart, "Deployment", "af-hub")["spec"]["template"]["spec"]["containers"][0]
    pod_env = {v["name"]: v["value"] for v in hub_container.get("env", []) if "value" in v}
    env = {
        **os.environ,
        **pod_env,
        "AF_RUNTIME": str(folder / "runtime.json"),
        "AF_FACILITY": str(folder / "facility.yaml"),
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    log = folder / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(JUPYTERHUB), "-f", str(wrapper)], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = RunningHub(
        f"http://127.0.0.1:{public}", f"http://{hub_address}:{hub}/hub/api", admin_token, log, folder / "state"
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the chart's hub exited {process.returncode}:\n{running.log_tail()}")
        try:
            return running.api("GET", "/").status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(answers, "the chart's hub answers", timeout=90, explain=running.log_tail)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
