"""Helpers of the Kubernetes, Helm and CVMFS tests: the example site's facility.yaml with a local
CVMFS root, a kubeconfig for a server that is never contacted, and schema validation of manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

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
