"""The facility's parts of every gateway, on top of whichever backend class the kind chose: the
view of what its clusters hold, clusters that stop with their owner's server, the quota, and the
metrics. gateway/gateway_config.py (the gateways `af up` runs) and gateway/kube_gateway.py (the
chart's) both add them here; each then names the quota's other sources (facility.yaml, peers, runs)."""

from __future__ import annotations

from typing import Any

from gateway.holdings import with_holdings
from gateway.quota import with_quota
from gateway.server_lifetime import stopping_with_server


def add_facility_parts(c: Any, backend: str, hub_token: str, hub_api_url: str, metrics_token: str = "") -> None:
    """`hub_token`: the gateway's token at the hub, which the hub also presents to it."""
    c.DaskGateway.backend_class = with_holdings(c.DaskGateway.backend_class)
    # Clusters stop when the hub reports their owner's server stopped, unless started to outlive it.
    c.DaskGateway.backend_class = stopping_with_server(c.DaskGateway.backend_class)
    c.StopWithServerMixin.hub_token = hub_token
    # A cluster or a scale-up past its user's quota is refused (facility.yaml's quotas; gateway.quota).
    c.DaskGateway.backend_class = with_quota(c.DaskGateway.backend_class)
    c.QuotaMixin.quota_backend = backend
    c.QuotaMixin.hub_api_url = hub_api_url
    c.QuotaMixin.ledger_token = hub_token
    # /api/metrics and /api/af/holdings for Prometheus and `af status`, when metrics are enabled (monitoring/).
    if metrics_token:
        from monitoring.gateway import with_metrics

        c.DaskGateway.backend_class = with_metrics(c.DaskGateway.backend_class)
        c.GatewayMetricsMixin.metrics_token = metrics_token
