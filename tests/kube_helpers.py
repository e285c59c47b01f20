"""Helpers of the Kubernetes, Helm and CVMFS tests: the example site's facility.yaml with a local
CVMFS root, a kubeconfig for a server that is never contacted, schema validation of manifests, the
chart's rendered objects, and the hub's users and spawners as JupyterHub constructs them."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from traitlets.config import Config

from hub_config.spawner import FacilitySpawner

ROOT = Path(__file__).resolve().parent.parent
SITE_EXAMPLE = ROOT / "examples" / "site-facility.yaml"
# The Kubernetes API version the manifests are checked against (kubernetes-validate ships its schemas).
KUBE_VERSION = "1.33"

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: never-contacted, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: nobody, user: {token: unused}}]
contexts: [{name: tests, context: {cluster: never-contacted, user: nobody, namespace: analysis}}]
current-context: tests
"""


def site_raw() -> dict[str, Any]:
    return yaml.safe_load(SITE_EXAMPLE.read_text())


CHART_DIR = ROOT / "helm" / "analysis-facility"
# The dependency charts cannot be downloaded on the test machines (helm dependency build).
OFFLINE = {"dask-gateway": {"enabled": False}, "cvmfs-csi": {"enabled": False}}


def render_objects(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects `helm template af <chart> -n analysis` renders for `values` (a helm_python.Chart)."""
    manifests = chart.render({**OFFLINE, **values}, name="af", namespace="analysis")
    objects = []
    for text in manifests.values():
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def metrics_values(secrets_folder: str = "/etc/prometheus/analysis-facility") -> dict[str, Any]:
    """Chart values: the chart's default facility (local login) with metrics enabled."""
    raw = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["facility"]
    raw["metrics"] = {"enabled": True, "alert_after_seconds": 60, "scrape_interval_seconds": 20}
    return {"facility": raw, "metrics": {"tokenDirectory": secrets_folder}}


def with_local_cvmfs(raw: dict[str, Any], cvmfs_root: Path) -> dict[str, Any]:
    """The example site with CVMFS at a local folder and every image published there."""
    raw = copy.deepcopy(raw)
    raw["data"]["cvmfs_root"] = str(cvmfs_root)
    for image in raw["images"]:
        publish(cvmfs_root, image["registry"])
    return raw


def publish(cvmfs_root: Path, image_ref: str) -> Path:
    """Lay out an unpacked image the way unpacked.cern.ch does (a directory tree with /usr/bin)."""
    path = cvmfs_root / "unpacked.cern.ch" / image_ref
    (path / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    return path


def validate(manifest: dict[str, Any]) -> None:
    """Raise kubernetes_validate's ValidationError when the object does not match the API schema."""
    kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def hub_user(db: Any, name: str, groups: Iterable[str] = ()) -> User:
    """A real JupyterHub user (ORM record in a hub database) with its groups."""
    record = orm.User(name=name)
    db.add(record)
    for group in groups:
        record.groups.append(orm.Group.find(db, group) or orm.Group(name=group))
    db.commit()
    return User(record, settings={})


def hub_spawner(user: User, site_file: Path, db: Any = None, config: Config | None = None) -> FacilitySpawner:
    """The hub's spawner for one user, as JupyterHub constructs it (with the hub's config)."""
    return FacilitySpawner(user=user, hub=Hub(), db=db, config=config or Config(), facility_file=str(site_file))
