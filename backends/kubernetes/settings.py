"""`site` of Kubernetes backends (docs/facility-yaml.md#site-of-kubernetes-backends)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facility.settings import SiteSettings

DEFAULT_GPU_TYPE_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class KubernetesSettings(SiteSettings):
    namespace: str = ""  # empty: the hub's namespace
    gpu_type_label: str = DEFAULT_GPU_TYPE_LABEL  # node label whose value is the GPU model
    home_storage_gb: int | None = None  # a home volume claim per user, of this size; None: no claim
    home_storage_class: str = ""  # empty: the cluster's default StorageClass
    offload: dict[str, Any] | None = None  # interLink virtual node (schema: $defs/offload)

    def kind_label(self, label: str) -> str:
        return "HPC via interLink" if self.offload else label
