"""helm/analysis-facility rendered by a real Helm engine (Helm v4's Go library, helm-python-sdk).

Every rendered object is validated against the Kubernetes API schema (kubernetes-validate). No
Kubernetes API server runs here, so nothing is installed. The maintained charts the chart depends on
(dask-gateway, cvmfs-csi) cannot be downloaded here: these renders set their `enabled` to false, and
a test checks that leaving them enabled without `helm dependency build` fails with a clear message.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import psutil
import pytest
import requests
import yaml
from cryptography.fernet import Fernet
from jupyterhub.app import JupyterHub

import facility
from af import hub_content
from backends.kubernetes.pods import CVMFS_CLAIM
from facility import examples
from facility.chart_schema import SCHEMA_FILE, SECRETS_FILE, render, render_secrets, values_schema
from facility.secrets import SECRETS, complete_secrets
from monitoring import chart_files, grafana
from monitoring.hub import OPERATOR_SERVICE
from monitoring.hub import SERVICE_NAME as PROMETHEUS_SERVICE
from monitoring.rules import FACILITY_JOB, GATEWAY_JOB, HUB_JOB, rules_document
from tests.harness import free_port_block
from tests.kube_helpers import CHART_DIR, OFFLINE, ROOT, metrics_values, render_objects, site_raw, validate
from tests.oidc_provider.fixture import Provider, write_settings

pytestmark = pytest.mark.no_facility


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def secret_data(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


EXPECTED = [
    ("ConfigMap", "analysis-facility-config"),
    ("Secret", "af-hub-runtime"),
    ("Secret", "analysis-facility-gateway-token"),
    ("ServiceAccount", "af-hub"),
    ("Role", "af-hub"),
    ("RoleBinding", "af-hub"),
    ("PersistentVolumeClaim", "af-hub-state"),
    ("Service", "hub"),
    ("Deployment", "af-hub"),
    ("Service", "proxy-public"),
    ("Service", "proxy-api"),
    ("Deployment", "af-proxy"),
    ("ConfigMap", "af-xcache"),
    ("Service", "xcache"),
    ("StatefulSet", "af-xcache"),
    ("StorageClass", "cvmfs"),
    ("PersistentVolumeClaim", CVMFS_CLAIM),
]


@pytest.mark.parametrize("source", ["defaults", "site-example"])
def test_chart_renders_valid_objects(chart, source):
    values = {} if source == "defaults" else {"facility": site_raw()}
    objects = render_objects(chart, values)
    for obj in objects:
        validate(obj)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(EXPECTED)


def test_site_example_reaches_the_hub_unchanged(chart):
    raw = site_raw()
    objects = render_objects(chart, {"facility": raw})
    config = find(objects, "ConfigMap", "analysis-facility-config")["data"]
    assert yaml.safe_load(config["facility.yaml"]) == raw
    facility.loads(config["facility.yaml"])  # the hub's loader accepts it
    assert config["gateway-backend"] == "cloud"  # the first kubernetes backend
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    token = secret_data(find(objects, "Secret", "analysis-facility-gateway-token"), "api-token")
    assert runtime["gateways"] == {
        "cloud": {"kind": "kubernetes", "url": "http://traefik-af-dask-gateway.analysis", "api_token": token}
    }
    assert runtime["facility_file"] == "/etc/analysis-facility/facility.yaml"
    assert len(bytes.fromhex(runtime["secrets"]["cookie_secret"])) == 32
    assert runtime["public_url"] == raw["hub"]["bind_url"]
    xcache = find(objects, "ConfigMap", "af-xcache")["data"]["xcache.cfg"]
    assert "pss.origin eospublic.example.org:1094" in xcache and "pss.cachelib libXrdPfc.so" in xcache
    hub = find(objects, "Deployment", "af-hub")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in hub["containers"][0]["volumeMounts"]}
    assert mounts["cvmfs"]["readOnly"] is True and mounts["cvmfs"]["mountPath"] == "/cvmfs"
    assert {"name": "cvmfs", "persistentVolumeClaim": {"claimName": CVMFS_CLAIM, "readOnly": True}} in hub["volumes"]
    claim = find(objects, "PersistentVolumeClaim", CVMFS_CLAIM)["spec"]
    assert claim["accessModes"] == ["ReadOnlyMany"] and claim["storageClassName"] == "cvmfs"
    assert find(objects, "StorageClass", "cvmfs")["provisioner"] == "cvmfs.csi.cern.ch"


def test_gateway_backend_can_be_chosen(chart):
    objects = render_objects(chart, {"facility": site_raw(), "daskGatewayBackend": "hpc-offload"})
    assert find(objects, "ConfigMap", "analysis-facility-config")["data"]["gateway-backend"] == "hpc-offload"
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    assert list(runtime["gateways"]) == ["hpc-offload"]


def test_optional_parts_can_be_left_out(chart):
    objects = render_objects(chart, {"xcache": {"enabled": False}, "cvmfs": {"enabled": False}})
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("StatefulSet", "af-xcache") not in kinds and ("StorageClass", "cvmfs") not in kinds
    hub = find(objects, "Deployment", "af-hub")["spec"]["template"]["spec"]
    assert all(v["name"] != "cvmfs" for v in hub["volumes"])


def refused(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as error:
        chart.render({**OFFLINE, **values}, name="af", namespace="analysis")
    return str(error.value)


def test_invalid_values_are_refused_with_a_clear_message(chart):
    bad = site_raw()
    bad["backends"][0]["kind"] = "pbs"
    assert "at '/facility/backends/0/kind': value must be one of 'local', 'kubernetes', 'slurm', 'htcondor'" in refused(
        chart, {"facility": bad}
    )
    bad = site_raw()
    bad["backends"][2]["site"]["offload"]["slurm_flags"] = ["--qos=gpu; rm -rf ~"]
    assert "/facility/backends/2/site/offload/slurm_flags/0" in refused(chart, {"facility": bad})
    assert "at '/xcache/ram'" in refused(chart, {"xcache": {"ram": "512m"}})
    assert "additional properties 'hubb' not allowed" in refused(chart, {"hubb": {}})
    assert "at '/proxy/service/type'" in refused(chart, {"proxy": {"service": {"type": "Ingress"}}})


def test_facility_without_kubernetes_backend_is_refused(chart):
    embedded = yaml.safe_load(facility.embedded_default_path().read_text())
    message = refused(chart, {"facility": embedded})
    assert "facility.backends: no backend has kind kubernetes" in message


def test_quotas_reach_the_hub_and_the_gateway(chart):
    """facility.yaml's quotas go to the ConfigMap both read (enforced: tests/test_kube_quota.py)."""
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["facility"]
    raw["quotas"] = {"default": {"cores": 4, "clusters": 1}}
    config = find(render_objects(chart, {"facility": raw}), "ConfigMap", "analysis-facility-config")["data"]
    assert yaml.safe_load(config["facility.yaml"])["quotas"] == raw["quotas"]
    raw["quotas"] = {"default": {"cores": -1}}
    assert "quotas" in refused(chart, {"facility": raw})


def test_unknown_gateway_backend_is_refused(chart):
    message = refused(chart, {"facility": site_raw(), "daskGatewayBackend": "tier2"})
    assert (
        'daskGatewayBackend: "tier2" is not a kubernetes backend of facility.yaml; choose one of: cloud, hpc-offload'
        in (message)
    )


def test_dependencies_enabled_but_not_fetched_fail_clearly(chart):
    with pytest.raises(
        helm.HelmRenderError, match=r"dask-gateway.enabled is true but the dask-gateway chart is not in"
    ):
        chart.render({}, name="af", namespace="analysis")
    with pytest.raises(helm.HelmRenderError, match=r"run `helm dependency build helm/analysis-facility`"):
        chart.render({"dask-gateway": {"enabled": False}}, name="af", namespace="analysis")
    declared = {d["name"]: d for d in yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["dependencies"]}
    assert declared["dask-gateway"]["condition"] == "dask-gateway.enabled"
    assert declared["cvmfs-csi"]["condition"] == "cvmfs-csi.enabled"
    assert {d["name"]: d["status"] for d in helm.dependency_list(CHART_DIR)} == {
        "dask-gateway": "missing",
        "cvmfs-csi": "missing",
    }
    report = helm.lint(str(CHART_DIR), OFFLINE, strict=True)
    assert report["errors"] == ["chart directory is missing these dependencies: dask-gateway,cvmfs-csi"]


def test_values_schema_is_generated_from_facility_schema():
    assert SCHEMA_FILE.read_text() == render(), "run .venv/bin/python -m facility.chart_schema"
    chart_schema = json.loads(SCHEMA_FILE.read_text())
    own = facility.loader.schema()
    embedded = {k: v for k, v in own.items() if k not in ("$defs", "$id", "$schema")}
    assert chart_schema["$defs"]["facility"] == embedded
    for name, definition in own["$defs"].items():
        assert chart_schema["$defs"][name] == definition
    assert values_schema()["properties"]["facility"] == {"$ref": "#/$defs/facility"}


def test_default_values_are_a_valid_facility_and_match_cvmfs_config(chart):
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    facility.from_dict(values["facility"])
    # The dask-gateway chart's gateway reads facility.yaml and its backend from our ConfigMap.
    config = find(render_objects(chart, {}), "ConfigMap", "analysis-facility-config")
    token = values["dask-gateway"]["gateway"]["auth"]["jupyterhub"]
    with_metrics = find(render_objects(chart, metrics_values()), "Secret", token["apiTokenFromSecretName"])
    for variable in values["dask-gateway"]["gateway"]["env"]:
        source = variable["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["name"] == config["metadata"]["name"] and ref["key"] in config["data"], variable["name"]
        else:  # the metrics token: in the gateway's token Secret when metrics are enabled
            ref = source["secretKeyRef"]
            assert ref["name"] == token["apiTokenFromSecretName"] and ref["key"] in with_metrics["data"], ref
    secret = find(render_objects(chart, {}), "Secret", token["apiTokenFromSecretName"])
    assert token["apiTokenFromSecretKey"] in secret["data"]
    csi = values["cvmfs-csi"]["extraConfigMaps"]["cvmfs-csi-default-local"]["default.local"]
    assert csi == (ROOT / "cvmfs" / "default.local").read_text()


def _load_hub_config(objects: list[dict[str, Any]], tmp_path, monkeypatch) -> tuple[Any, dict[str, Any]]:
    """JupyterHub loads the chart's config file (which loads the project's) with the rendered settings."""
    config = find(objects, "ConfigMap", "analysis-facility-config")["data"]
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    # The pod mounts these at /etc/analysis-facility*; here they go to a temporary folder instead.
    for name in ("facility.yaml", "jupyterhub_config_k8s.py"):
        (tmp_path / name).write_text(config[name])
    runtime.update(facility_file=str(tmp_path / "facility.yaml"), state_dir=str(tmp_path / "state"))
    (tmp_path / "runtime.json").write_text(json.dumps(runtime))
    monkeypatch.setenv("AF_RUNTIME", str(tmp_path / "runtime.json"))
    hub = find(objects, "Deployment", "af-hub")["spec"]["template"]["spec"]["containers"][0]
    for variable in hub["env"]:
        if "value" in variable and variable["name"] in ("AF_HUB_SERVICE", "AF_PROXY_API_SERVICE"):
            monkeypatch.setenv(variable["name"], variable["value"])
    app = JupyterHub()
    app.load_config_file(str(tmp_path / "jupyterhub_config_k8s.py"))
    return app.config, runtime


def test_hub_configuration_of_the_chart_loads_in_jupyterhub(chart, tmp_path, monkeypatch):
    """JupyterHub loads the chart's config file, which loads the project's, with the rendered settings."""
    # The chart's default facility (local login); the OIDC test below starts a real provider.
    objects = render_objects(chart, {})
    c, runtime = _load_hub_config(objects, tmp_path, monkeypatch)
    assert c.JupyterHub.spawner_class == "hub_config.spawner.FacilitySpawner"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    find(objects, "Service", "hub")  # the names the hub's config uses are the Services the chart creates
    find(objects, "Service", "proxy-api")
    assert c.Spawner.cmd == ["af-singleuser"]
    # No `af up` in a cluster: loading the config published the examples and the user guide.
    state = Path(runtime["state_dir"])
    assert examples.is_published(examples.repo_path(state))
    assert (state / hub_content.GUIDE_FILE).read_text().startswith("<h1>")
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["dask-gateway-cloud"]["url"] == "http://traefik-af-dask-gateway.analysis"
    assert services["dask-gateway-cloud"]["api_token"] == runtime["gateways"]["cloud"]["api_token"]


def test_chart_secrets_are_the_facilitys_list_of_secrets(chart):
    """The chart generates every secret `af up` does (facility/secrets.py), in the same shapes."""
    assert SECRETS_FILE.read_text() == render_secrets(), "run .venv/bin/python -m facility.chart_schema"
    runtime = json.loads(secret_data(find(render_objects(chart, {}), "Secret", "af-hub-runtime"), "runtime.json"))
    assert set(runtime["secrets"]) == set(SECRETS)
    made_by_af_up = complete_secrets()
    for name, kind in SECRETS.items():
        value, reference = runtime["secrets"][name], made_by_af_up[name]
        assert len(value) == len(reference), (name, kind)
        if kind == "hex":
            bytes.fromhex(value)
        if kind == "fernet":
            Fernet(value.encode())  # a key dask-gateway's database encryption accepts


def test_chart_with_oidc_login_starts_the_hub_configuration(chart, tmp_path, monkeypatch):
    """With OIDC login the hub reads the client secret and the auth_state key from the rendered runtime."""
    port = free_port_block(1)
    client = {"client_id": "analysis-facility", "client_secret": "s3cret", "redirect_uris": ["http://x/cb"]}
    settings = write_settings(tmp_path / "provider.json", port, client, {"alice": {"password": "pw"}}, 60)
    provider = Provider(port, settings, tmp_path / "provider.log")
    provider.start()
    try:
        values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
        fac = values["facility"]
        fac["auth"] = {
            "type": "oidc",
            "oidc": {
                "issuer": provider.issuer,
                "client_id": "analysis-facility",
                "client_secret_env": "AF_OIDC_SECRET",
            },
        }
        monkeypatch.setenv("AF_OIDC_SECRET", "s3cret")
        objects = render_objects(chart, {"facility": fac})
        c, runtime = _load_hub_config(objects, tmp_path, monkeypatch)
    finally:
        provider.stop()
    assert c.JupyterHub.authenticator_class.__name__ == "FacilityOIDCAuthenticator"
    assert c.FacilityOIDCAuthenticator.token_url == f"{provider.issuer}/token"
    assert c.CryptKeeper["keys"] == [bytes.fromhex(runtime["secrets"]["crypt_key"])]
    assert c.JupyterHub.cookie_secret == bytes.fromhex(runtime["secrets"]["cookie_secret"])
    assert c.ConfigurableHTTPProxy.auth_token == runtime["secrets"]["proxy_token"]


def test_chart_tokens_are_new_hex_tokens_each_its_own(chart):
    """The gateway's hub token and the metrics tokens are 256-bit hex strings, none shared."""
    objects = render_objects(chart, metrics_values())
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    (gateway,) = runtime["gateways"].values()
    tokens = [gateway["api_token"], runtime["metrics"]["hub_token"], runtime["metrics"]["scrape_token"]]
    tokens += [value for name, value in runtime["secrets"].items() if SECRETS[name] == "hex"]
    assert all(len(bytes.fromhex(token)) == 32 for token in tokens)
    assert len(set(tokens)) == len(tokens)
    assert secret_data(find(objects, "Secret", "analysis-facility-gateway-token"), "api-token") == gateway["api_token"]


def test_rendered_objects_are_really_checked():
    """kubernetes-validate refuses what the API server would refuse (so the checks above can fail)."""
    from kubernetes_validate.utils import ValidationError

    bad = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}, "spec": {"replicas": "one"}}
    with pytest.raises(ValidationError):
        validate(copy.deepcopy(bad))


def test_metrics_files_of_the_chart_are_current():
    for name, text in chart_files.generated().items():
        assert (chart_files.FOLDER / name).read_text() == text, f"{name}: run python -m monitoring.chart_files"


def test_chart_with_metrics_gives_prometheus_a_configuration_it_accepts(chart, tmp_path):
    """The scrape jobs and rules the chart hands a site's Prometheus, checked by Prometheus's promtool."""
    objects = render_objects(chart, metrics_values(str(tmp_path / "tokens")))
    for obj in objects:
        validate(obj)
    added = {("Service", "af-metrics"), ("ConfigMap", "af-prometheus"), ("ConfigMap", "af-grafana-dashboard")}
    added.add(("Secret", "af-prometheus-tokens"))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(EXPECTED + list(added))
    prometheus = find(objects, "ConfigMap", "af-prometheus")["data"]
    jobs = yaml.safe_load(prometheus["scrape-configs.yml"])
    assert {job["job_name"]: job["static_configs"][0]["targets"] for job in jobs} == {
        HUB_JOB: ["hub.analysis.svc:8081"],  # the hub Service
        GATEWAY_JOB: ["api-af-dask-gateway.analysis.svc:8000"],  # dask-gateway chart's API Service
        FACILITY_JOB: ["af-metrics.analysis.svc:9101"],  # the exporter beside the hub
    }
    (gateway_job,) = [job for job in jobs if job["job_name"] == GATEWAY_JOB]
    assert gateway_job["static_configs"][0]["labels"] == {"backend": "cloud"}  # the rules name the backend
    assert all(job["scrape_interval"] == "20s" for job in jobs)
    rules = yaml.safe_load(prometheus["rules.yml"])
    assert rules == rules_document(60)  # facility.yaml's alert_after_seconds
    # The site mounts the token Secret at tokenDirectory; promtool checks the files it names.
    (tmp_path / "tokens").mkdir()
    for key in ("hub-token", "scrape-token"):
        (tmp_path / "tokens" / key).write_text(secret_data(find(objects, "Secret", "af-prometheus-tokens"), key))
    (tmp_path / "rules.yml").write_text(prometheus["rules.yml"])
    site_config = {"rule_files": [str(tmp_path / "rules.yml")], "scrape_configs": jobs}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(site_config))
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules['groups'][0]['rules']) + len(rules['groups'][1]['rules'])} rules found" in (
        checked.stdout + checked.stderr
    )
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    assert runtime["metrics"]["hub_token"] == secret_data(find(objects, "Secret", "af-prometheus-tokens"), "hub-token")
    assert runtime["metrics"]["scrape_token"] == (tmp_path / "tokens" / "scrape-token").read_text()
    dashboard = find(objects, "ConfigMap", "af-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["analysis-facility.json"]) == grafana.dashboard()


def test_chart_hub_with_metrics_registers_prometheus_and_no_operator_page(chart, tmp_path, monkeypatch):
    objects = render_objects(chart, metrics_values())
    c, runtime = _load_hub_config(objects, tmp_path, monkeypatch)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services[PROMETHEUS_SERVICE]["api_token"] == runtime["metrics"]["hub_token"]
    # No Prometheus of the facility's own in a cluster, and the proxy's pod could not reach it.
    assert OPERATOR_SERVICE not in services
    containers = find(objects, "Deployment", "af-hub")["spec"]["template"]["spec"]["containers"]
    exporter = next(x for x in containers if x["name"] == "exporter")
    assert exporter["args"] == ["python", "-m", "monitoring.exporter"]
    assert exporter["ports"] == [{"name": "exporter", "containerPort": 9101}]


def test_the_exporter_serves_the_chart_runtime_to_other_hosts(chart, tmp_path):
    """The exporter started as the chart's sidecar starts it: it listens on every address (the
    site's Prometheus is in another pod) and answers, saying the hub is not there (no hub runs)."""
    objects = render_objects(chart, metrics_values())
    config = find(objects, "ConfigMap", "analysis-facility-config")["data"]
    runtime = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    port = free_port_block(1)
    (tmp_path / "facility.yaml").write_text(config["facility.yaml"])
    runtime.update(facility_file=str(tmp_path / "facility.yaml"), state_dir=str(tmp_path / "state"))
    runtime["metrics"]["exporter_port"] = port
    runtime["ports"]["hub_api"] = free_port_block(1)  # nothing answers there
    (tmp_path / "runtime.json").write_text(json.dumps(runtime))
    env = {**os.environ, "AF_RUNTIME": str(tmp_path / "runtime.json")}
    exporter = subprocess.Popen([sys.executable, "-m", "monitoring.exporter"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                break
            except requests.ConnectionError:
                assert exporter.poll() is None and time.monotonic() < deadline, exporter.stderr.read().decode()
                time.sleep(0.3)
        assert "af_hub_api_up 0.0" in text, text
        listening = [c.laddr for c in psutil.Process(exporter.pid).net_connections() if c.status == "LISTEN"]
        assert ("0.0.0.0", port) in [(a.ip, a.port) for a in listening], listening
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
