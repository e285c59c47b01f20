"""The facility's gateway mixins go in front of every kind's backend class (gateway/gateway_config.py,
gateway/kube_gateway.py). A mixin method with the name of one of the kind's own methods hides it:
QuotaMixin's `_facility` once hid the Slurm and HTCondor backends', and every batch cluster failed
to start ("'Facility' object is not subscriptable"). Here no name the mixins define may be one
the kinds' classes define themselves; dask-gateway's hooks (setup, start_cluster, get_worker_env,
...) are extended by both, each calling super()."""

from __future__ import annotations

import inspect

import pytest

from backends.common.held_clusters import DatabaseHoldings
from backends.htcondor.gateway import HTCondorBackend
from backends.kubernetes.holdings import KubeHoldings
from backends.local.gateway import FacilityLocalBackend, PerUserLocalBackend
from backends.slurm.gateway import FacilitySlurmBackend
from gateway.dashboard_guard import DashboardKeyMixin
from gateway.keep_clusters import StopOnlyWhenFacilityStopsMixin
from gateway.quota import QuotaMixin
from gateway.server_lifetime import StopWithServerMixin
from monitoring.gateway import GatewayMetricsMixin

pytestmark = pytest.mark.no_facility

MIXINS = (
    QuotaMixin,
    StopWithServerMixin,
    DashboardKeyMixin,
    StopOnlyWhenFacilityStopsMixin,
    GatewayMetricsMixin,
    DatabaseHoldings,
    KubeHoldings,
)
KIND_BACKENDS = (FacilitySlurmBackend, HTCondorBackend, FacilityLocalBackend, PerUserLocalBackend)


def names_from(cls: type, packages: tuple[str, ...]) -> set[str]:
    """Attributes the classes of these packages in `cls`'s MRO define."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] in packages:
            names |= {n for n in vars(klass) if not (n.startswith("__") and n.endswith("__"))}
    return names


def kinds_own(cls: type) -> set[str]:
    """Names only the project's classes define: dask-gateway's hooks, which mixins and kinds both
    extend through super(), are not among them."""
    return names_from(cls, ("backends", "gateway", "monitoring")) - names_from(cls, ("dask_gateway_server",))


@pytest.mark.parametrize("backend", KIND_BACKENDS, ids=lambda c: c.__name__)
def test_no_mixin_hides_a_method_of_a_kinds_backend(backend: type) -> None:
    kind = kinds_own(backend)
    for mixin in MIXINS:
        # Methods and properties: behaviour. (Config traits of the same name are settings both read.)
        behaviour = {n for n, v in vars(mixin).items() if inspect.isfunction(v) or isinstance(v, property)}
        clash = kind & behaviour - {"__init__"}
        assert not clash, f"{mixin.__name__} would hide {backend.__name__}'s {sorted(clash)}"
