"""The chart's dask-gateway (Kubernetes backend) with the facility's own parts.

dask-gateway's chart runs the gateway; the chart's values give it, as `gateway.extraConfig`::

    from gateway.kube_gateway import configure_from_environment
    configure_from_environment(c)

The kind's settings come from backends.kubernetes.gateway (cluster options, pod settings). On top,
as gateway/gateway_config.py does for the gateways `af up` runs: a cluster stops with its owner's
notebook server unless started to outlive it, the hub's quota ledger can list a user's clusters
here, and a cluster or scale-up past a quota is refused. Their token is the gateway's hub token,
which dask-gateway's chart puts in $JUPYTERHUB_API_TOKEN (this chart's
analysis-facility-gateway-token Secret); the hub sends the same one. With facility.yaml metrics
enabled, /api/metrics answers Prometheus's scrape token ($AF_METRICS_TOKEN, same Secret).
"""

from __future__ import annotations

import os
from typing import Any

from backends.kubernetes import gateway as kube_gateway
from gateway.facility_parts import add_facility_parts

ENV_HUB_TOKEN = "JUPYTERHUB_API_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_METRICS_TOKEN = "AF_METRICS_TOKEN"  # noqa: S105 - the variable's name, not a token


def configure_from_environment(c: Any) -> None:
    """The kind's configuration from $AF_FACILITY_YAML and $AF_GATEWAY_BACKEND, then the facility's parts."""
    kube_gateway.configure_from_environment(c)
    hub_api = c.JupyterHubAuthenticator.get("jupyterhub_api_url") if "JupyterHubAuthenticator" in c else None
    backend = os.environ[kube_gateway.ENV_GATEWAY_BACKEND]
    token = os.environ.get(ENV_HUB_TOKEN, "")
    add_facility_parts(c, backend, token, hub_api or "", os.environ.get(ENV_METRICS_TOKEN, ""))
    c.QuotaMixin.facility_text = os.environ.get(kube_gateway.ENV_FACILITY_TEXT, "")
