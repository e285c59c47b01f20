"""dask-gateway-server's Options for a backend, from backends.common.cluster_options' plain fields.

The gateway refuses values outside the fields, users whose groups may not use the backend and
values above their allowance, whatever client they call it from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dask_gateway_server.options import Bool, Field, Integer, Options, Select, String

from backends.common import cluster_names
from backends.common.cluster_options import NotAllowedError, OptionField, allowed_for, check_allowance, cluster_config
from backends.common.cluster_options import option_fields as plain_fields
from facility.model import Backend, Facility

# (fac, narrowed backend, validated options) -> ClusterConfig overrides
ConfigBuilder = Callable[[Facility, Backend, Any], dict[str, Any]]


class ClusterName(String):
    """The cluster's readable name: dask-gateway stores what validate() returns with the cluster."""

    def validate(self, x: Any) -> str:
        return cluster_names.checked_name(x)


def gateway_field(option: OptionField) -> Field:
    if option.limits is not None:
        rng = option.limits
        return Integer(option.field, default=rng.default, min=rng.min, max=rng.max, label=option.label)
    if option.flag:
        return Bool(option.field, default=option.default, label=option.label)
    if option.text:
        return ClusterName(option.field, default=option.default, label=option.label)
    return Select(option.field, list(option.choices), default=option.default, label=option.label)


def cluster_options(
    fac: Facility, backend: Backend, environment: dict[str, str] | None = None, build: ConfigBuilder | None = None
) -> Options:
    """The options form of one backend; `build` turns validated options into the kind's ClusterConfig
    settings from the backend's own limits (default: cluster_config from the user's narrowed
    limits, with `environment` added to the jobs' environment)."""

    def handler(options: Any, user: Any) -> dict[str, Any]:
        narrowed = check_allowance(fac, backend, options, user)
        if build is not None:
            return build(fac, backend, options)
        return cluster_config(fac, narrowed, options, environment)

    return Options(*(gateway_field(f) for f in plain_fields(fac, backend)), handler=handler)


def cluster_options_per_user(
    fac: Facility, backend: Backend, environment: dict[str, str] | None = None, build: ConfigBuilder | None = None
) -> Callable[[Any], Options]:
    """For dask-gateway's Backend.cluster_options: each user's form shows only their allowance."""

    def for_user(user: Any) -> Options:
        try:
            return cluster_options(fac, allowed_for(fac, backend, user), environment, build)
        except NotAllowedError:
            return cluster_options(fac, backend, environment, build)  # its handler refuses, with the reason

    return for_user
