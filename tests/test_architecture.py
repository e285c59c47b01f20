"""The shape of the code (docs/architecture.md): one registry of kinds, typed settings, the
runtime.json contract, and processes that load only what they need. The import contracts
themselves run in `make lint` (lint-imports); these check what an import graph cannot."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import facility
from af.runtime import StateDir, plan_runtime, write_runtime
from backends.common.cluster_options import specification
from backends.common.gateway_options import cluster_options
from backends.registry import KINDS, kind_of
from facility.loader import schema
from facility.runtime import Runtime, RuntimeFileError, Secrets, read_runtime
from facility.secrets import SECRETS
from facility.settings import SiteSettingsError
from tests.kube_helpers import ROOT, site_raw
from tests.test_helm import chart, find, render_objects, secret_data  # noqa: F401 - `chart` is a fixture

pytestmark = pytest.mark.no_facility

PRODUCTION_PACKAGES = ("facility", "backends", "hub_config", "gateway", "af", "dask_backends")
# facility.yaml's loader may say "only a kubernetes backend can offload"; naming one kind is not listing kinds.
OFFLOAD_KEY = "offload"


def _production_files() -> list[Path]:
    return [p for package in PRODUCTION_PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def test_the_registry_is_the_only_list_of_kinds_in_production_code() -> None:
    kinds = set(KINDS)
    listings = []
    for path in _production_files():
        if path == ROOT / "backends" / "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            items = node.elts if isinstance(node, ast.List | ast.Tuple | ast.Set) else []
            items = node.keys if isinstance(node, ast.Dict) else items
            named = {i.value for i in items if isinstance(i, ast.Constant) and i.value in kinds}
            if len(named) >= 2:
                listings.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert listings == []


def test_schema_kinds_and_site_keys_follow_the_registry() -> None:
    backend_schema = schema()["$defs"]["backend"]
    assert backend_schema["properties"]["kind"]["enum"] == list(KINDS)
    per_kind = {rule["if"]["properties"]["kind"]["const"]: rule["then"] for rule in backend_schema["allOf"]}
    assert list(per_kind) == list(KINDS)
    for name, kind in KINDS.items():
        assert per_kind[name] == {"properties": {"site": {"$ref": f"#/$defs/site_{name}"}}}
        keys = set(schema()["$defs"][f"site_{name}"]["properties"]) - {OFFLOAD_KEY}
        fields = {f.name for f in dataclasses.fields(kind.settings)} - {OFFLOAD_KEY}
        assert keys == fields, name


def test_unknown_site_keys_are_refused_naming_the_key() -> None:
    raw = site_raw()
    hpc = next(b for b in raw["backends"] if b["kind"] == "slurm")
    hpc["site"]["slurm_cnf"] = "/etc/slurm/slurm.conf"  # a typo of slurm_conf
    index = raw["backends"].index(hpc)
    with pytest.raises(facility.FacilityError) as caught:
        facility.from_dict(raw)
    assert f"backends[{index}].site: unknown key 'slurm_cnf'; allowed keys: " in str(caught.value)
    assert "slurm_conf" in str(caught.value)
    # A backend built in code (no schema) is refused when its settings are first read.
    fac = facility.from_dict(site_raw())
    bad = dataclasses.replace(fac.backend(hpc["name"]), site={"slurm_cnf": "/x"})
    with pytest.raises(SiteSettingsError, match="site: unknown key 'slurm_cnf'; allowed keys: .*slurm_conf"):
        kind_of(bad).site_settings(bad)


def test_site_settings_are_parsed_once_per_backend() -> None:
    fac = facility.from_dict(site_raw())
    hpc = next(b for b in fac.backends if b.kind == "slurm")
    settings = kind_of(hpc).site_settings(hpc)
    assert settings is kind_of(hpc).site_settings(hpc)
    assert settings.account == "af-users" and settings.notebook_pending_timeout == 300


def test_runtime_json_round_trips_through_its_one_reader_and_writer(tmp_path: Path) -> None:
    fac = facility.load(facility.embedded_default_path())
    state = StateDir(tmp_path / "state")
    planned = plan_runtime(fac, facility.embedded_default_path(), state, port=18000)
    write_runtime(state, planned)
    assert read_runtime(state.runtime_file) == planned
    assert state.runtime_file.stat().st_mode & 0o777 == 0o600
    again = plan_runtime(fac, facility.embedded_default_path(), state, port=18000, previous=planned)
    assert again.secrets == planned.secrets  # logins and the gateway database survive a restart
    raw = json.loads(state.runtime_file.read_text())
    raw["ports"]["hub_apii"] = 1
    with pytest.raises(RuntimeFileError, match="unknown key ports.hub_apii"):
        Runtime.from_dict(raw)
    del raw["ports"]["hub_apii"], raw["secrets"]["proxy_token"]
    with pytest.raises(RuntimeFileError, match="missing key secrets.proxy_token"):
        Runtime.from_dict(raw)


def test_runtime_secrets_are_the_ones_facility_secrets_generates() -> None:
    assert [f.name for f in dataclasses.fields(Secrets)] == list(SECRETS)


def test_the_charts_runtime_secret_passes_the_strict_reader(chart) -> None:  # noqa: F811 - the fixture
    objects = render_objects(chart, {"facility": site_raw()})
    raw = json.loads(secret_data(find(objects, "Secret", "af-hub-runtime"), "runtime.json"))
    runtime = Runtime.from_dict(raw, "the chart's runtime.json")
    assert runtime.gateways["cloud"].kind == "kubernetes" and runtime.ports.dashboards is None


def test_notebook_side_option_fields_match_the_gateways() -> None:
    fac = facility.from_dict(site_raw())
    for backend in fac.backends:
        assert specification(fac, backend) == cluster_options(fac, backend).get_specification()


def _modules_loaded_by(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_hub_does_not_load_distributed_nor_the_gateway_server() -> None:
    parts = [part for kind in KINDS.values() for part in (kind.notebook_child, kind.wait) if part]
    children = "\n".join(f"import {part.partition(':')[0]}" for part in parts)
    hub = "import hub_config.spawner, hub_config.auth, hub_config.oidc, hub_config.dashboard_service\n" + children
    hub += "\nimport hub_config.wait_api"
    loaded = _modules_loaded_by(hub)
    assert "distributed" not in loaded and "dask_gateway_server" not in loaded and "gateway" not in loaded


def test_the_notebook_client_does_not_load_the_gateway_server() -> None:
    loaded = _modules_loaded_by("import dask_backends, dask_backends.catalog, dask_backends.widget")
    assert "dask_gateway_server" not in loaded and "gateway" not in loaded and "hub_config" not in loaded


def test_a_kinds_parts_are_found_through_the_registry() -> None:
    for kind in KINDS.values():
        assert callable(kind.load("notebook_child")) and callable(kind.load("gateway"))
        assert not kind.runner or callable(kind.load("runner"))
        assert not kind.wait or callable(kind.load("wait"))
        assert kind.label and kind.settings.from_site({}) == kind.settings()


def test_a_kind_refines_its_label_from_its_settings() -> None:
    fac = facility.from_dict(site_raw())
    labels = {b.name: kind_of(b).label_of(b) for b in fac.backends}
    assert labels["hpc-offload"] == "HPC via interLink" and labels["cloud"] == KINDS["kubernetes"].label


def test_child_spawners_named_by_an_older_hub_database_are_found() -> None:
    from hub_config.children import MOVED_SPAWNERS, import_spawner

    for old, new in MOVED_SPAWNERS.items():
        assert import_spawner(old) is import_spawner(new)
