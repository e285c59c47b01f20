"""Metrics: a real Prometheus (Debian's) started by `af up`, scraping the real hub, gateway and the
facility exporter; its rules checked by promtool and by a real alert when the XCache is stopped."""

from __future__ import annotations

import html
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import facility
from af import supervise
from af.runtime import StateDir, plan_runtime
from facility.runtime import Runtime
from monitoring import grafana, prometheus
from monitoring.panels import PANELS
from tests.conftest import StartFacility
from tests.harness import RunningFacility, embedded_raw, execute_in_kernel

pytestmark = pytest.mark.side_facility

# Short intervals, so targets and alerts settle within seconds.
FAST_METRICS = {
    "enabled": True,
    "scrape_interval_seconds": 2,
    "evaluation_interval_seconds": 2,
    "alert_after_seconds": 4,
}


def _with_metrics(metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**embedded_raw(), "metrics": metrics or FAST_METRICS}


# --- facility.yaml -------------------------------------------------------------------------------


def test_metrics_are_off_unless_enabled() -> None:
    fac = facility.from_dict(embedded_raw())
    assert not fac.metrics.enabled
    on = facility.from_dict(_with_metrics({"enabled": True}))
    assert on.metrics.enabled and on.metrics.scrape_interval_seconds == 15 and on.metrics.alert_after_seconds == 120


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"enabled": True, "scrape_every": 5}, "metrics: unknown key 'scrape_every'"),
        ({"enabled": "yes"}, "metrics.enabled: 'yes' is a str; expected boolean"),
        ({"enabled": True, "scrape_interval_seconds": 0}, "metrics.scrape_interval_seconds: 0 is out of range"),
        ({"scrape_interval_seconds": 5}, "metrics: missing required key 'enabled'"),
    ],
)
def test_bad_metrics_section_is_refused(metrics: dict[str, Any], message: str) -> None:
    with pytest.raises(facility.FacilityError) as refused:
        facility.from_dict(_with_metrics(metrics), "site.yaml")
    assert message in str(refused.value)


# --- generated configuration, checked by Prometheus's own promtool ------------------------------


@pytest.fixture
def planned(tmp_path: Path) -> Runtime:
    fac = facility.from_dict(_with_metrics())
    runtime = plan_runtime(fac, tmp_path / "facility.yaml", StateDir(tmp_path / "state"), 20000)
    prometheus.write_configs(runtime, fac.name)
    return runtime


def test_ports_follow_the_public_port(planned: Runtime) -> None:
    ports = planned.ports
    assert planned.metrics["prometheus_port"] == ports.dashboards + 1 == 20000 + 13
    assert planned.metrics["exporter_port"] == ports.dashboards + 2
    assert planned.metrics["operator_port"] == ports.dashboards + 3


def test_promtool_accepts_config_and_rules(planned: Runtime) -> None:
    folder = prometheus.prometheus_dir(planned)
    checked = subprocess.run(
        ["promtool", "check", "config", str(folder / "prometheus.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
    assert oct((folder / "hub-token").stat().st_mode & 0o777) == "0o600"


def test_promtool_unit_test_cache_down_alert(planned: Runtime, tmp_path: Path) -> None:
    """promtool's rule unit tests: CacheDown fires only after the cache has been down for `for:`."""
    rules = prometheus.prometheus_dir(planned) / "rules.yml"
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": 'af_xcache_up{cache="c1"}', "values": "1 1 0 0 0 0 0 0 0 0"}],
                "alert_rule_test": [
                    {"eval_time": "3s", "alertname": "CacheDown", "exp_alerts": []},
                    {
                        "eval_time": "8s",
                        "alertname": "CacheDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "cache": "c1"},
                                "exp_annotations": {
                                    "summary": "XCache c1 does not answer: reads fall back to the origin, slower."
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(json.dumps(spec))
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_test_hub_and_spawn_alerts(planned: Runtime, tmp_path: Path) -> None:
    """HubNotAnswering after the hub's scrapes fail for `for:`; SpawnsFailing after a failed spawn."""
    rules = prometheus.prometheus_dir(planned) / "rules.yml"
    failed = 'jupyterhub_server_spawn_duration_seconds_count{job="hub",instance="h",status="failure",reason="error"}'
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [
                    {"series": 'up{job="hub",instance="h"}', "values": "1 1 0 0 0 0 0 0 0 0"},
                    {"series": failed, "values": "0 0 1 1 1 1 1 1 1 1"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3s", "alertname": "HubNotAnswering", "exp_alerts": []},
                    {"eval_time": "3s", "alertname": "SpawnsFailing", "exp_alerts": []},
                    {
                        "eval_time": "8s",
                        "alertname": "HubNotAnswering",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "job": "hub", "instance": "h"},
                                "exp_annotations": {
                                    "summary": "JupyterHub does not answer on /hub/metrics: "
                                    "nobody can log in or start a server."
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "8s",
                        "alertname": "SpawnsFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "hub",
                                    "instance": "h",
                                    "status": "failure",
                                    "reason": "error",
                                },
                                "exp_annotations": {
                                    "summary": "Notebook servers failed to start in the last 10 minutes "
                                    "(failure: error)."
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(json.dumps(spec))
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_is_current() -> None:
    assert grafana.DASHBOARD_FILE.read_text() == grafana.render(), "run .venv/bin/python -m monitoring.grafana"
    dashboard = json.loads(grafana.DASHBOARD_FILE.read_text())
    assert [p["targets"][0]["expr"] for p in dashboard["panels"]] == [p.expr for p in PANELS]


# --- the running stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(start_facility: StartFacility) -> RunningFacility:
    # A quota, so the exporter reports what users hold against it (af_quota_held, af_quota_ceiling).
    return start_facility({**_with_metrics(), "quotas": {"default": {"cores": 4, "clusters": 2}}})


def _prometheus(running: RunningFacility) -> str:
    return f"http://127.0.0.1:{running.runtime['metrics']['prometheus_port']}"


def _query(running: RunningFacility, expr: str) -> list[dict[str, Any]]:
    reply = requests.get(f"{_prometheus(running)}/api/v1/query", params={"query": expr}, timeout=10)
    assert reply.status_code == 200, f"{expr}: {reply.text}"
    return reply.json()["data"]["result"]


def _wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} not seen within {timeout:.0f} s (last: {last!r})")


def test_prometheus_scrapes_every_target(monitored: RunningFacility) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = requests.get(f"{_prometheus(monitored)}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = _wait_for("every target up", all_up)
    jobs = {t["labels"]["job"] for t in targets}
    assert jobs == {"prometheus", "hub", "gateway", "facility"}
    assert [t["labels"]["backend"] for t in targets if t["labels"]["job"] == "gateway"] == ["local"]
    # The hub's own metrics arrive with the service token (it answers 403 without one).
    assert _query(monitored, "jupyterhub_total_users")
    hub_api = f"http://127.0.0.1:{monitored.runtime['ports']['hub_api']}"
    assert requests.get(f"{hub_api}/hub/metrics", timeout=10).status_code == 403


def test_af_status_lists_prometheus(monitored: RunningFacility) -> None:
    status = monitored.af("status")
    assert "prometheus" in status.stdout and "metrics-exporter" in status.stdout
    port = monitored.runtime["metrics"]["prometheus_port"]
    line = next(line for line in status.stdout.splitlines() if "prometheus" in line)
    assert "up" in line and str(port) in line


def test_gateway_metrics_need_the_scrape_token(monitored: RunningFacility) -> None:
    gateway = monitored.runtime["gateways"]["local"]
    url = f"http://127.0.0.1:{gateway['api_port']}/api/metrics"
    assert requests.get(url, timeout=10).status_code == 403
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 403
    token = monitored.runtime["metrics"]["scrape_token"]
    reply = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200 and "af_gateway_clusters" in reply.text


NOTEBOOK_CLUSTER = """
from dask_backends import new_cluster
cluster = new_cluster("local", workers=1, worker_cores=1, worker_memory_gb=1, shutdown_on_close=False)
cluster.get_client().wait_for_workers(1, timeout=120)
print("CLUSTER", cluster.name)
"""


STOP_CLUSTERS = """
from dask_backends import gateway
for c in gateway("local").list_clusters():
    gateway("local").stop_cluster(c.name)
"""


def _value(running: RunningFacility, expr: str) -> float | None:
    result = _query(running, expr)
    return float(result[0]["value"][1]) if result else None


def _exporter_samples(running: RunningFacility) -> dict[tuple[str, tuple[str, ...]], float]:
    """(metric name, label values in the order user, backend, resource) -> value, as the facility
    exporter answers a scrape now (the exposition sorts labels by name)."""
    reply = requests.get(f"http://127.0.0.1:{running.runtime['metrics']['exporter_port']}/metrics", timeout=30)
    reply.raise_for_status()
    order = ("user", "backend", "resource")
    return {
        (sample.name, tuple(sample.labels[k] for k in order if k in sample.labels)): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def test_servers_clusters_and_workers_are_counted(monitored: RunningFacility) -> None:
    alice = monitored.login("alice")
    reply = alice.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = alice.wait_ready()
    url, token = f"{alice.url}{server['url']}", alice.token()
    out = execute_in_kernel(url, token, NOTEBOOK_CLUSTER)
    assert "CLUSTER" in out
    try:
        _wait_for(
            "alice's server in af_servers",
            lambda: _value(monitored, 'af_servers{backend="local",state="running"}') == 1,
        )
        assert _value(monitored, 'af_server_requested{backend="local",resource="memory_bytes"}') == 2 * 1024**3
        _wait_for(
            "the cluster and its worker",
            lambda: (
                _value(monitored, 'af_gateway_clusters{backend="local",status="running"}') == 1
                and _value(monitored, 'af_gateway_workers{backend="local",status="running"}') == 1
            ),
        )
        assert _value(monitored, 'af_gateway_worker_memory_bytes{backend="local"}') == 1024**3
        assert _value(monitored, "jupyterhub_running_servers") == 1
        # `af status` names who holds what: alice's server and her cluster with its size.
        status = " ".join(monitored.af("status").stdout.split())
        assert "Users holding servers, Dask clusters or runs" in status
        assert "│ alice │ local: 1 cores, 2 GB │" in status, status
        cluster = out.split("CLUSTER", 1)[1].split()[0]
        assert f"local: {cluster}, 1 workers (1 cores, 1 GB)" in status, status
        assert "cores 2 of 4, clusters 1 of 2" in status, status
        # The exporter itself, scraped: what alice holds against her quota.
        held = _exporter_samples(monitored)
        exporter_log = monitored.state_dir / "logs" / "metrics-exporter.log"
        assert held["af_quota_ledger_up", ()] == 1, exporter_log.read_text()
        for resource, value in [("cores", 2), ("memory_bytes", 3 * 1024**3), ("servers", 1), ("clusters", 1)]:
            assert held["af_quota_held", ("alice", "local", resource)] == value, resource
        assert held["af_quota_held", ("alice", "local", "runs")] == 0
        assert held["af_quota_ceiling", ("alice", "all", "cores")] == 4
        assert held["af_quota_ceiling", ("alice", "all", "clusters")] == 2
        assert ("af_quota_ceiling", ("alice", "all", "memory_bytes")) not in held  # no ceiling set
        cores = 'sum(af_quota_held{user="alice",resource="cores"})'  # over her backends
        _wait_for("af_quota_held in Prometheus", lambda: _value(monitored, cores) == 2)
    finally:
        execute_in_kernel(url, token, STOP_CLUSTERS)
        alice.stop_server()


def test_every_dashboard_query_is_answered(monitored: RunningFacility) -> None:
    _wait_for("recording rules", lambda: _query(monitored, "af:servers:by_backend"))
    for panel in PANELS:
        _query(monitored, panel.expr)  # asserts Prometheus accepts it


def test_xcache_bytes_from_cache_and_origin(monitored: RunningFacility, tmp_path: Path) -> None:
    """XRootD's own per-file counts (pfc g-stream) reach Prometheus: a second read is all hits."""
    data = monitored.runtime["data"]
    sample = next(Path(data["origin"]["local_root"]).rglob("*.root"))  # `af up` seeded the lake
    lfn = "/" + str(sample.relative_to(data["origin"]["local_root"]))
    url = f"{data['caches']['local-xcache']['url']}/{lfn}"
    served = 'sum(af_xcache_bytes_total{cache="local-xcache"})'
    before = _value(monitored, served) or 0.0
    for copy in ("cold", "warm"):
        subprocess.run(["xrdcp", "-f", "-s", url, str(tmp_path / copy)], check=True, timeout=60)
    size = sample.stat().st_size
    _wait_for("both reads counted", lambda: (_value(monitored, served) or 0) - before >= 2 * size)
    hits = _value(monitored, 'af_xcache_bytes_total{cache="local-xcache",source="cache"}')
    assert hits >= size  # the warm read came from the cache's disk
    assert _value(monitored, 'af_xcache_files_closed_total{cache="local-xcache"}') >= 2
    config = (monitored.state_dir / "xrootd" / "xcache-local-xcache.cfg").read_text()
    assert "xrootd.mongstream pfc" in config


def test_operator_page_plots_the_metrics_for_admins(monitored: RunningFacility) -> None:
    page_url = f"{monitored.url}/services/af-operator/"
    admin = monitored.login("admin", monitored.admin_password)
    page = admin.http.get(page_url, timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert page.url == page_url  # after the hub's OAuth round trip
    for panel in PANELS:
        assert html.escape(panel.title) in page.text
    assert page.text.count("<svg") == len(PANELS)
    assert "<polyline" in page.text and "Prometheus did not answer" not in page.text
    # Another user gets through the hub's login but not onto the page.
    assert monitored.login("mallory").http.get(page_url, timeout=60).status_code == 403


# Last: stopping the cache leaves its alert firing for a while after.
def test_cache_down_alert_fires(monitored: RunningFacility) -> None:
    def firing() -> list[dict[str, Any]]:
        alerts = requests.get(f"{_prometheus(monitored)}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "CacheDown" and a["state"] == "firing"]

    _wait_for("the cache up in the exporter", lambda: _value(monitored, 'af_xcache_up{cache="local-xcache"}') == 1)
    assert not firing()
    rpc = supervise.rpc(StateDir(monitored.state_dir))
    rpc.supervisor.stopProcess("xcache-local-xcache")
    try:
        alerts = _wait_for("CacheDown firing", firing, timeout=60)
        assert alerts[0]["labels"]["cache"] == "local-xcache"
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        rpc.supervisor.startProcess("xcache-local-xcache")
    _wait_for("CacheDown resolved", lambda: not firing(), timeout=60)
