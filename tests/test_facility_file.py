"""facility.yaml: the shipped files load; malformed files give errors naming key, value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import facility
from tests.harness import ROOT, embedded_raw
from tests.kube_helpers import site_raw

pytestmark = pytest.mark.no_facility


def test_embedded_default_has_only_the_local_backend() -> None:
    fac = facility.load(facility.embedded_default_path())
    assert [b.kind for b in fac.backends] == ["local"]
    assert fac.auth.type == "local"


def test_site_example_has_all_four_backend_kinds() -> None:
    fac = facility.load(ROOT / "examples" / "site-facility.yaml")
    assert {b.kind for b in fac.backends} == {"local", "kubernetes", "slurm", "htcondor"}
    hpc = fac.backend("hpc")
    assert hpc.gpus.max == 4 and hpc.gpu_types == ("a100", "h100") and [q.name for q in hpc.queues] == ["cpu", "gpu"]
    assert fac.auth.oidc is not None and fac.auth.oidc.groups_claim == "groups"


def _problems(raw: object) -> list[str]:
    with pytest.raises(facility.FacilityError) as caught:
        facility.from_dict(raw, "test.yaml")
    assert "test.yaml is not a valid facility description" in str(caught.value)
    return caught.value.problems


def _mutated(change) -> dict:
    raw = copy.deepcopy(embedded_raw())
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["backends"][0].update(kind="docker"),
            "backends[0].kind: 'docker' is not allowed; allowed: local, kubernetes, slurm, htcondor",
        ),
        (lambda r: r["backends"][0].pop("label"), "backends[0]: missing required key 'label'"),
        (
            lambda r: r["backends"][0]["resources"].update(cores={"default": 1, "min": 1, "max": -2}),
            "backends[0].resources.cores.max: -2 is out of range; expected a number >= 0",
        ),
        (
            lambda r: r["backends"][0].update(colour="red"),
            "backends[0]: unknown key 'colour'; allowed keys:",
        ),
        (
            lambda r: r["backends"][0]["resources"].update(memory_gb={"default": 9, "min": 1, "max": 8}),
            "backends[0].resources.memory_gb.default: 9 is outside [1, 8]",
        ),
        (
            lambda r: r["backends"][0]["resources"].update(cores={"min": 4, "max": 2}),
            "backends[0].resources.cores: min 4 is larger than max 2",
        ),
        (
            lambda r: r["backends"][0].update(images=["root-6"]),
            "backends[0].images: 'root-6' is not an image; known images: coffea-2026",
        ),
        (
            lambda r: r["backends"][0].update(data_cache="nowhere"),
            "backends[0].data_cache: 'nowhere' is not in data.caches; known caches: local-xcache",
        ),
        (lambda r: r["backends"].append(copy.deepcopy(r["backends"][0])), "backends: the name 'local' is used twice"),
        (lambda r: r["backends"][0].update(name="Local Backend"), "backends[0].name: 'Local Backend' is not allowed"),
        (lambda r: r.update(backends=[]), "backends: [] is too short; at least 1 expected"),
        (lambda r: r["images"][0].update(registry="not a ref"), "images[0].registry: 'not a ref' is not allowed"),
        (lambda r: r["auth"].update(type="ldap"), "auth.type: 'ldap' is not allowed; allowed: local, oidc"),
        (lambda r: r["auth"].update(type="oidc"), "auth.oidc: required when auth.type is 'oidc'"),
        (lambda r: r["hub"].update(start_timeout_seconds="soon"), "hub.start_timeout_seconds: 'soon' is a str"),
        (
            lambda r: r["auth"].update(login_throttle={"lockout_seconds": 0}),
            "auth.login_throttle.lockout_seconds: 0 is out of range",
        ),
        (
            lambda r: r["auth"].update(login_throttle={"tries": 3}),
            "auth.login_throttle: unknown key 'tries'",
        ),
        (
            lambda r: r["hub"].update(idle_cull_minutes=60),
            "hub: unknown key 'idle_cull_minutes'; allowed keys: bind_url, idle_cull,",
        ),
        (
            lambda r: r["hub"].update(idle_cull={"groups": {"workshop": -5}}),
            "hub.idle_cull.groups.workshop: -5 is out of range; expected a number >= 0",
        ),
        (
            lambda r: r["hub"].update(idle_cull={"groups": {"af-idle-5m": 5}}),
            "hub.idle_cull.groups: 'af-idle-5m' starts with 'af-idle-', kept for the cullers' own groups",
        ),
        (
            lambda r: r["hub"].update(idle_cull={"check_every_seconds": 1}),
            "hub.idle_cull.check_every_seconds: 1 is out of range; expected a number >= 5",
        ),
    ],
)
def test_malformed_facility_names_key_value_and_allowed(change, expected: str) -> None:
    problems = _problems(_mutated(change))
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    raw = _mutated(lambda r: (r["backends"][0].update(kind="docker"), r["images"][0].pop("label")))
    problems = _problems(raw)
    assert len(problems) == 2, problems


def test_not_yaml_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "facility.yaml"
    bad.write_text("name: x\nbackends: [\n  - {kind: local\n")
    with pytest.raises(facility.FacilityError) as caught:
        facility.load(bad)
    assert "line " in str(caught.value) and "not valid YAML" in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(facility.FacilityError) as caught:
        facility.load(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(caught.value) and "file not found" in str(caught.value)


def test_top_level_must_be_a_mapping() -> None:
    assert any("(top level): ['a', 'b'] is a list; expected object" in p for p in _problems(["a", "b"]))


def test_af_check_facility_reports_problems_and_exits_2(tmp_path: Path) -> None:
    from tests.harness import run_af

    bad = tmp_path / "facility.yaml"
    bad.write_text("name: x\nbackends: []\nimages: []\n")
    result = run_af(tmp_path / "state", "check-facility", str(bad), check=False)
    assert result.returncode == 2
    assert "backends: [] is too short" in result.stderr


def test_password_settings_are_refused_for_an_identity_provider() -> None:
    raw = yaml.safe_load((ROOT / "examples" / "site-facility.yaml").read_text())
    raw["auth"].update(shared_password=True, login_throttle={"lockout_seconds": 5})
    problems = _problems(raw)
    assert any("auth.shared_password: only for auth.type 'local'" in p for p in problems), problems
    assert any("auth.login_throttle: only for auth.type 'local'" in p for p in problems), problems


def test_login_throttle_settings_reach_the_model() -> None:
    fac = facility.from_dict(_mutated(lambda r: r["auth"].update(login_throttle={"lockout_seconds": 4})), "t.yaml")
    assert fac.auth.login_throttle.lockout_seconds == 4 and fac.auth.login_throttle.failures_per_user == 5


def test_idle_cull_gives_each_user_the_longest_of_their_groups() -> None:
    cull = {"minutes": 120, "groups": {"workshop": 30, "long": 480, "staff": 0}}
    fac = facility.from_dict(_mutated(lambda r: r["hub"].update(idle_cull=cull)), "t.yaml")
    idle = fac.hub.idle_cull
    assert idle.minutes_for(set()) == 120 and idle.minutes_for({"physics"}) == 120  # unlisted groups: the default
    assert idle.minutes_for({"workshop"}) == 30  # shorter than the default: a listed group wins
    assert idle.minutes_for({"workshop", "long"}) == 480
    assert idle.minutes_for({"workshop", "staff"}) == 0  # never culled: the longest of all
    assert idle.timeouts == (30, 120, 480) and idle.group_of(30) == "af-idle-30m"
    assert facility.from_dict(embedded_raw(), "t.yaml").hub.idle_cull.timeouts == ()  # off unless configured


def test_home_storage_on_an_offloaded_backend_is_refused_in_words() -> None:
    raw = site_raw()
    offloaded = next(i for i, b in enumerate(raw["backends"]) if "offload" in (b.get("site") or {}))
    raw["backends"][offloaded]["site"]["home_storage_gb"] = 10
    problems = _problems(raw)
    assert problems == [
        f"backends[{offloaded}].site.home_storage_gb: an offloaded backend's pods run on an interLink virtual "
        "node, which attaches no volume claims; leave it out there (homes stay at the HPC centre)"
    ]
    cloud = next(i for i, b in enumerate(raw["backends"]) if b["name"] == "cloud")
    raw["backends"][offloaded]["site"].pop("home_storage_gb")
    raw["backends"][cloud]["site"]["home_storage_gb"] = 0
    assert _problems(raw) == [f"backends[{cloud}].site.home_storage_gb: 0 is out of range; expected a number >= 1"]
