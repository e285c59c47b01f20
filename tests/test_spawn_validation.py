"""Server-side validation of spawn requests, the check that counts whatever the form sent."""

from __future__ import annotations

import pytest

import facility
from facility import RequestError, validate_spawn
from facility.validation import from_form
from tests.harness import ROOT

pytestmark = pytest.mark.no_facility

SITE = facility.load(ROOT / "examples" / "site-facility.yaml")


def test_defaults_fill_what_the_user_left_out() -> None:
    request = validate_spawn(SITE, {"backend": "tier2"}, set())
    assert (request.cores, request.memory_gb, request.queue, request.walltime_hours) == (1, 2, "short", 2)


def test_form_posts_are_read_as_one_value_per_field() -> None:
    form = from_form({"backend": ["hpc"], "cores": ["8"], "gpus": ["2"]})
    request = validate_spawn(SITE, form, {"hpc-users"})
    assert (request.backend, request.cores, request.gpus, request.gpu_type) == ("hpc", 8, 2, "")
    with pytest.raises(RequestError, match="cores: sent 2 times; give one value"):
        from_form({"backend": ["hpc"], "cores": ["8", "1"]})


@pytest.mark.parametrize("key", ["backend", "cores", "image", "queue", "walltime_hours"])
def test_lists_for_single_values_are_refused_not_cut_to_their_first_element(key: str) -> None:
    # Before: {"cores": [8, 64]} from the REST API became 8 without a word.
    values = {
        "backend": ["tier2", "cloud"],
        "cores": [1, 64],
        "image": ["x"],
        "queue": ["short"],
        "walltime_hours": [2],
    }
    options = {"backend": "tier2", key: values[key]}
    with pytest.raises(RequestError, match=f"^{key}: give one value, not a list$"):
        validate_spawn(SITE, options, set())


def test_wall_time_on_a_backend_without_one_is_refused() -> None:
    assert SITE.backend("cloud").walltime_hours is None
    with pytest.raises(RequestError, match="walltime_hours: backend 'cloud' has no wall time to choose"):
        validate_spawn(SITE, {"backend": "cloud", "walltime_hours": "4"}, set())
    # A validated request carries walltime_hours 0 for such a backend and is checked again at start.
    assert validate_spawn(SITE, {"backend": "cloud", "walltime_hours": 0}, set()).walltime_hours == 0


def test_gpu_type_is_kept_only_with_gpus() -> None:
    request = validate_spawn(SITE, {"backend": "hpc", "gpus": "1", "gpu_type": "h100"}, {"gpu-users"})
    assert (request.gpus, request.gpu_type, request.queue) == (1, "h100", "cpu")
    with pytest.raises(RequestError, match="gpu_type: 'h100' is not available; choose one of: none"):
        validate_spawn(SITE, {"backend": "hpc", "gpus": "0", "gpu_type": "h100"}, {"gpu-users"})


@pytest.mark.parametrize(
    ("options", "groups", "message"),
    [
        ({"backend": "hpc"}, set(), "backend: you may not use 'hpc'"),
        ({"backend": "tier2", "cores": "9"}, set(), "cores: 9 is out of range; choose between 1 and 8"),
        ({"backend": "tier2", "cores": "0"}, set(), "cores: 0 is out of range"),
        ({"backend": "tier2", "cores": "2; rm -rf /"}, set(), "cores: '2; rm -rf /' is not a whole number"),
        ({"backend": "tier2", "memory_gb": True}, set(), "memory_gb: True is not a whole number"),
        ({"backend": "tier2", "queue": "$(id)"}, set(), "queue: '$(id)' is not available; choose one of: short, long"),
        ({"backend": "tier2", "queue": "short", "walltime_hours": "3"}, set(), "walltime_hours: 3 is out of range"),
        ({"backend": "hpc", "gpus": "1", "gpu_type": "v100"}, {"hpc-users"}, "gpu_type: 'v100' is not available"),
        ({"backend": "cloud", "gpus": "1"}, set(), "gpus: 1 is out of range; choose between 0 and 0"),
        ({"backend": "cloud", "image": "../../etc"}, set(), "image: '../../etc' is not available"),
        ({"backend": "nowhere"}, set(), "backend: 'nowhere' is not available"),
        ({"backend": "cloud", "command": "bash"}, set(), "unknown option 'command'"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(options: dict, groups: set, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        validate_spawn(SITE, options, groups)
    assert message in str(caught.value)


def test_admins_may_use_every_backend() -> None:
    assert validate_spawn(SITE, {"backend": "hpc"}, set(), is_admin=True).backend == "hpc"
