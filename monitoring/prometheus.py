"""Prometheus for the facility: its configuration, rules and token files, and its command line.

`af up` writes everything under <state>/prometheus/ (tokens 0600) and supervises Debian's
`prometheus` binary in the foreground. Targets:

- job `hub`: JupyterHub's /hub/metrics, with the token of the hub service `prometheus` (monitoring.hub),
  whose role has the read:metrics scope (the hub answers 403 without it);
- job `gateway`: every dask-gateway's /api/metrics (monitoring.gateway), labelled with its backend;
- job `facility`: the facility exporter (monitoring.exporter);
- job `prometheus`: Prometheus itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from facility.runtime import Runtime
from monitoring.rules import FACILITY_JOB, GATEWAY_JOB, HUB_JOB, rules_document

LOOPBACK = "127.0.0.1"


def prometheus_dir(runtime: Runtime) -> Path:
    return runtime.state_path / "prometheus"


def config_file(runtime: Runtime) -> Path:
    return prometheus_dir(runtime) / "prometheus.yml"


def _bearer(token_file: Path) -> dict[str, Any]:
    # From a file, so no token is in the configuration Prometheus shows on its /config page.
    return {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}


def prometheus_config(runtime: Runtime, facility_name: str) -> dict[str, Any]:
    metrics = runtime.metrics
    folder = prometheus_dir(runtime)
    hub_port = runtime.ports.hub_api
    gateways = [
        {"targets": [f"{LOOPBACK}:{gw.api_port}"], "labels": {"backend": name, "kind": gw.kind}}
        for name, gw in runtime.gateways.items()
    ]
    scrape_configs = [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"{LOOPBACK}:{metrics['prometheus_port']}"]}]},
        {
            "job_name": HUB_JOB,
            "metrics_path": "/hub/metrics",
            "static_configs": [{"targets": [f"{LOOPBACK}:{hub_port}"]}],
            **_bearer(folder / "hub-token"),
        },
        {"job_name": FACILITY_JOB, "static_configs": [{"targets": [f"{LOOPBACK}:{metrics['exporter_port']}"]}]},
    ]
    if gateways:
        scrape_configs.append(
            {
                "job_name": GATEWAY_JOB,
                "metrics_path": "/api/metrics",
                "static_configs": gateways,
                **_bearer(folder / "scrape-token"),
            }
        )
    interval = f"{metrics['scrape_interval_seconds']}s"
    return {
        "global": {
            "scrape_interval": interval,
            # A scrape may not take longer than the interval between scrapes.
            "scrape_timeout": f"{min(metrics['scrape_interval_seconds'], 10)}s",
            "evaluation_interval": f"{metrics['evaluation_interval_seconds']}s",
            "external_labels": {"facility": facility_name},
        },
        "rule_files": [str(folder / "rules.yml")],
        "scrape_configs": scrape_configs,
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_configs(runtime: Runtime, facility_name: str) -> list[Path]:
    """Write prometheus.yml, rules.yml and the two token files; returns the files written."""
    folder = prometheus_dir(runtime)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    metrics = runtime.metrics
    files = {
        "hub-token": metrics["hub_token"],
        "scrape-token": metrics["scrape_token"],
        "rules.yml": yaml.safe_dump(rules_document(metrics["alert_after_seconds"]), sort_keys=False),
        "prometheus.yml": yaml.safe_dump(prometheus_config(runtime, facility_name), sort_keys=False),
    }
    for name, text in files.items():
        _write_private(folder / name, text)
    return [folder / name for name in files]


def command(program: str, runtime: Runtime) -> list[str]:
    metrics = runtime.metrics
    folder = prometheus_dir(runtime)
    return [
        program,
        f"--config.file={config_file(runtime)}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--storage.tsdb.retention.time={metrics['retention_days']}d",
        f"--web.listen-address={LOOPBACK}:{metrics['prometheus_port']}",
        # Debian's defaults point at /etc/prometheus and /usr/share; this instance keeps to its folder.
        f"--web.console.templates={folder / 'consoles'}",
        f"--web.console.libraries={folder / 'console_libraries'}",
    ]
