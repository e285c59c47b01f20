"""Group allowances (auth.allowances in facility.yaml): what each user may pick, and the refusals.

These run the real loader, validate_spawn and dask-gateway's Options on facility.yaml dicts; the
same checks run inside the hub and the gateways (tests/test_oidc.py drives those end to end).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from backends.common.cluster_options import NotAllowedError
from backends.common.gateway_options import cluster_options, cluster_options_per_user
from facility import FacilityError, RequestError, from_dict, validate_spawn
from facility.allowances import usable_backends

pytestmark = pytest.mark.no_facility

BASE: dict[str, Any] = {
    "name": "groups",
    "backends": [
        {
            "name": "cpu",
            "kind": "local",
            "label": "CPU",
            "resources": {
                "cores": {"default": 1, "min": 1, "max": 8},
                "memory_gb": {"default": 2, "min": 1, "max": 32},
            },
            "dask": {"workers": {"max": 20}, "worker_memory_gb": {"default": 2, "min": 1, "max": 16}},
        },
        {
            "name": "gpu",
            "kind": "slurm",
            "label": "GPU",
            "resources": {
                "cores": {"default": 1, "min": 1, "max": 16},
                "memory_gb": {"default": 4, "min": 1, "max": 64},
                "gpus": {"default": 0, "min": 0, "max": 4},
            },
            "gpu_types": ["a100", "h100"],
            "allowed_groups": ["cms", "ml"],
        },
    ],
    "images": [
        {"name": "coffea", "label": "coffea", "registry": "reg.example.org/coffea:1", "default": True},
        {"name": "ml", "label": "ML", "registry": "reg.example.org/ml:1"},
    ],
    "auth": {
        "type": "local",
        "allowances": [
            {"max": {"cores": 2, "memory_gb": 4, "gpus": 0, "workers": 2, "worker_memory_gb": 2}, "images": ["coffea"]},
            {"groups": ["cms"], "max": {"cores": 8, "gpus": 1, "workers": 10}, "gpu_types": ["a100"]},
            {"groups": ["ml"], "backends": ["gpu"], "images": ["ml", "coffea"]},
        ],
    },
}


@pytest.fixture(scope="module")
def fac():
    return from_dict(copy.deepcopy(BASE))


def _by_name(backends):
    return {b.name: b for b in backends}


def test_everyone_gets_the_default_allowance(fac) -> None:
    mine = _by_name(usable_backends(fac, set()))
    assert list(mine) == ["cpu"]  # gpu is open to cms and ml only
    cpu = mine["cpu"]
    assert (cpu.cores.max, cpu.memory_gb.max, cpu.dask.workers.max, cpu.dask.worker_memory_gb.max) == (2, 4, 2, 2)
    assert cpu.image_names == ("coffea",)


def test_groups_widen_the_allowance_to_the_most_generous(fac) -> None:
    cms = _by_name(usable_backends(fac, {"cms"}))
    # The most generous entry wins per key; cms names no memory ceiling, so the backend's holds.
    assert cms["cpu"].cores.max == 8 and cms["cpu"].memory_gb.max == 32
    assert cms["gpu"].gpus.max == 1 and cms["gpu"].gpu_types == ("a100",)
    ml = _by_name(usable_backends(fac, {"ml"}))
    assert ml["gpu"].gpus.max == 4 and ml["gpu"].gpu_types == ("a100", "h100")  # ml's entry has no ceilings
    assert set(ml["gpu"].image_names) == {"coffea", "ml"}
    assert ml["cpu"].cores.max == 2  # ml's entry covers only gpu: cpu falls back to everyone's


def test_admins_are_not_limited(fac) -> None:
    admin = _by_name(usable_backends(fac, set(), is_admin=True))
    assert admin["cpu"].cores.max == 8 and admin["gpu"].gpus.max == 4


@pytest.mark.parametrize(
    ("groups", "options", "message"),
    [
        (set(), {"backend": "cpu", "cores": 3}, "cores: 3 is out of range; choose between 1 and 2"),
        (set(), {"backend": "cpu", "image": "ml"}, "image: 'ml' is not available; choose one of: coffea"),
        (set(), {"backend": "gpu"}, "you may not use 'gpu' (it is open to the groups cms, ml)"),
        ({"cms"}, {"backend": "gpu", "gpus": 2}, "gpus: 2 is out of range; choose between 0 and 1"),
        ({"cms"}, {"backend": "gpu", "gpus": 1, "gpu_type": "h100"}, "gpu_type: 'h100' is not available"),
    ],
)
def test_requests_beyond_the_allowance_are_refused(fac, groups, options, message) -> None:
    with pytest.raises(RequestError) as caught:
        validate_spawn(fac, options, groups)
    assert message in str(caught.value)


def test_requests_within_the_allowance_pass(fac) -> None:
    assert validate_spawn(fac, {"backend": "gpu", "gpus": 1, "gpu_type": "a100"}, {"cms"}).gpus == 1
    assert validate_spawn(fac, {"backend": "gpu", "gpus": 4, "gpu_type": "h100", "image": "ml"}, {"ml"}).gpus == 4


def test_no_matching_allowance_means_no_backend() -> None:
    raw = copy.deepcopy(BASE)
    raw["auth"]["allowances"] = [{"groups": ["cms"]}]
    fac = from_dict(raw)
    assert usable_backends(fac, {"atlas"}) == []
    with pytest.raises(RequestError, match="not in any group"):
        validate_spawn(fac, {}, {"atlas"})


def _gateway_user(name: str, *groups: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, groups=list(groups), admin=False)


def test_gateway_options_follow_the_allowance(fac) -> None:
    cpu = fac.backend("cpu")
    per_user = cluster_options_per_user(fac, cpu)
    spec = {f["field"]: f["spec"] for f in per_user(_gateway_user("erin")).get_specification()}
    assert spec["worker_memory_gb"]["max"] == 2 and spec["image"]["options"] == ["coffea"]
    # A client that ignores the form: the backend-wide Options still hold the user to their allowance.
    options = cluster_options(fac, cpu)
    with pytest.raises(NotAllowedError, match="worker_memory_gb: 8 is more than your groups allow"):
        options.get_configuration(options.parse_options({"worker_memory_gb": 8}), _gateway_user("erin"))
    config = options.get_configuration(options.parse_options({"worker_memory_gb": 2}), _gateway_user("erin"))
    assert config["cluster_max_workers"] == 2


def test_allowances_must_name_known_backends_and_images() -> None:
    raw = copy.deepcopy(BASE)
    raw["auth"]["allowances"].append({"groups": ["x"], "backends": ["tpu"], "images": ["nope"], "max": {"cores": -1}})
    with pytest.raises(FacilityError) as caught:
        from_dict(raw)
    assert "auth.allowances[3].max.cores: -1 is out of range" in str(caught.value)
    raw["auth"]["allowances"][3]["max"]["cores"] = 1
    with pytest.raises(FacilityError) as caught:
        from_dict(raw)
    assert "auth.allowances[3].backends: 'tpu' is not one of the backends" in str(caught.value)
    assert "auth.allowances[3].images: 'nope' is not one of the images" in str(caught.value)


def test_dask_gateways_client_reads_every_backends_options(fac) -> None:
    """The client (dask_gateway.Gateway.cluster_options) builds its fields from the gateway's
    specification and refuses keys it does not know, as it did a cluster name's max_length."""
    from dask_gateway.options import Options as ClientOptions

    for backend in fac.backends:
        specification = cluster_options(fac, backend).get_specification()
        client = ClientOptions._from_spec(specification)
        assert set(client) == {f["field"] for f in specification}
