"""The processes `af up` adds when facility.yaml enables metrics: Prometheus and the facility exporter."""

from __future__ import annotations

import sys

from af.components import Component, find_program
from facility.runtime import Runtime
from monitoring import prometheus
from monitoring.plan import enabled

INSTALL_HINT = "Debian package prometheus, scripts/test-install.d/55-prometheus.sh installs it"


def metrics_components(runtime: Runtime, base_env: dict[str, str]) -> list[Component]:
    if not enabled(runtime):
        return []
    metrics = runtime.metrics
    return [
        Component(
            name="metrics-exporter",
            command=[sys.executable, "-m", "monitoring.exporter"],
            port=metrics["exporter_port"],
            health_path="/metrics",
            env=base_env,
            priority=40,
        ),
        Component(
            name="prometheus",
            command=prometheus.command(find_program("prometheus", INSTALL_HINT), runtime),
            port=metrics["prometheus_port"],
            health_path="/-/ready",
            env=base_env,
            priority=45,
        ),
    ]
