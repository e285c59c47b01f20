"""What a facility pod (notebook server or Dask worker) on a kubernetes backend carries.

Shared by KubeSpawner (backends.kubernetes.spawner) and dask-gateway's Kubernetes backend
(backends.kubernetes.gateway), so a notebook and its workers land on the same kind of node, see the
same CVMFS and read data through the same cache.

Offloaded backends (facility.yaml ``site.offload``) run their pods on an interLink virtual node:
the pod carries the node selector and tolerations that reach that node, and the annotations
interLink's Slurm plugin turns into the Slurm job (``slurm-job.vk.io/flags`` are sbatch flags,
``slurm-job.vk.io/pre-exec`` runs before the container, ``slurm-job.vk.io/image-root`` prefixes
an image given as a path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.common.gres import gpu_gres
from backends.kubernetes.settings import KubernetesSettings
from facility.cvmfs import facility_root, image_path
from facility.data_environment import data_environment
from facility.model import Backend, Facility

GPU_RESOURCE = "nvidia.com/gpu"
# cvmfs-csi's usual PersistentVolumeClaim name; helm/analysis-facility creates it.
CVMFS_CLAIM = "cvmfs"
CVMFS_VOLUME = "cvmfs"
SLURM_FLAGS = "slurm-job.vk.io/flags"
SLURM_PRE_EXEC = "slurm-job.vk.io/pre-exec"
SLURM_IMAGE_ROOT = "slurm-job.vk.io/image-root"
NOTEBOOK_PORT = 8888  # where the notebook server listens inside its pod (KubeSpawner's default)


@dataclass
class PodSettings:
    """Pod fields for one request, in Kubernetes API spelling (camelCase dicts)."""

    image: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    resource_limits: dict[str, str] = field(default_factory=dict)


def offload(backend: Backend) -> dict[str, Any] | None:
    """The backend's interLink offload settings, or None when its pods stay in the cluster."""
    return KubernetesSettings.of(backend).offload or None


def namespace(backend: Backend) -> str | None:
    return KubernetesSettings.of(backend).namespace or None


def cvmfs_volume(fac: Facility, offloaded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """CVMFS mounted read-only: the cvmfs-csi claim in the cluster, the HPC node's /cvmfs when offloaded."""
    root = facility_root(fac)
    if offloaded:
        # A virtual kubelet cannot attach a CSI volume; the HPC node mounts CVMFS itself.
        volume = {"name": CVMFS_VOLUME, "hostPath": {"path": root, "type": "Directory"}}
    else:
        volume = {"name": CVMFS_VOLUME, "persistentVolumeClaim": {"claimName": CVMFS_CLAIM, "readOnly": True}}
    mount = {"name": CVMFS_VOLUME, "mountPath": root, "readOnly": True}
    if not offloaded:
        mount["mountPropagation"] = "HostToContainer"  # repositories cvmfs-csi mounts later appear too
    return volume, mount


def slurm_flags(backend: Backend, gpus: int, gpu_type: str) -> list[str]:
    """sbatch flags for an offloaded pod: the operator's, then the GPUs the user asked for."""
    flags = [str(f) for f in (offload(backend) or {}).get("slurm_flags", ())]
    if gpus:
        flags.append(f"--gres={gpu_gres(gpus, gpu_type)}")
    return flags


def pod_settings(
    fac: Facility, backend: Backend, image_name: str, gpus: int = 0, gpu_type: str = "", in_cluster: bool = False
) -> PodSettings:
    """Everything but the command and the CPU/memory sizes, for a validated request on `backend`.

    in_cluster=True ignores the backend's offload target (a Dask scheduler stays next to its gateway).
    """
    if backend.kind != "kubernetes":
        raise ValueError(f"backend {backend.name!r} is a {backend.kind} backend, not kubernetes")
    image = fac.image(image_name)
    target = None if in_cluster else offload(backend)
    volume, mount = cvmfs_volume(fac, target is not None)
    env = {"AF_BACKEND": backend.name, "AF_IMAGE": image.registry, "AF_CVMFS_ROOT": facility_root(fac)}
    env.update(data_environment(fac, backend))
    settings = PodSettings(image=image.registry, volumes=[volume], volume_mounts=[mount], environment=env)
    if gpus:
        settings.resource_limits[GPU_RESOURCE] = str(gpus)
    if target is None:
        if gpus:
            # GPU nodes are usually tainted so only pods that ask for GPUs land there.
            settings.tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
            if gpu_type:
                settings.node_selector[KubernetesSettings.of(backend).gpu_type_label] = gpu_type
        return settings
    settings.node_selector.update({str(k): str(v) for k, v in target["node_selector"].items()})
    settings.tolerations.extend(dict(t) for t in target.get("tolerations", ()))
    flags = slurm_flags(backend, gpus, gpu_type)
    if flags:
        settings.annotations[SLURM_FLAGS] = " ".join(flags)
    if target.get("pre_exec"):
        settings.annotations[SLURM_PRE_EXEC] = target["pre_exec"]
    if "image_root" in target:
        settings.annotations[SLURM_IMAGE_ROOT] = target["image_root"]
    if target.get("image_from_cvmfs"):
        # Apptainer on the HPC node runs the unpacked directory: no pull, same bits as the notebook.
        settings.image = str(image_path(fac, image))
    return settings
