"""Where a container image lives on CVMFS, unpacked as unpacked.cern.ch publishes it.

DUCC / cvmfs-unpacker publish ``registry.example.org/group/image:tag`` as the directory
``<root>/unpacked.cern.ch/registry.example.org/group/image:tag``. Apptainer runs such a directory
directly, so batch jobs and interLink-offloaded pods use it instead of pulling the image.
The root is configurable (facility.yaml ``data.cvmfs_root``) so tests use a local folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from facility.model import Facility, Image

UNPACKED_REPOSITORY = "unpacked.cern.ch"
DEFAULT_ROOT = "/cvmfs"
# The same reference syntax facility.yaml's images[].registry accepts.
IMAGE_REFERENCE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+$")


class CvmfsImageError(LookupError):
    """The image is not known, not a valid reference, or not published on CVMFS."""


def cvmfs_path(image_ref: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """The unpacked path of an image reference, without checking that it exists."""
    if not IMAGE_REFERENCE.match(image_ref) or ".." in image_ref.split("/"):
        raise CvmfsImageError(
            f"{image_ref!r} is not an image reference of the form registry/repository:tag "
            "(for example registry.example.org/analysis-facility/notebook:2026.9)"
        )
    return Path(root) / UNPACKED_REPOSITORY / image_ref


def resolve(image_ref: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """The unpacked path of an image reference; fails clearly when it is not published."""
    path = cvmfs_path(image_ref, root)
    if not Path(root).is_dir():
        raise CvmfsImageError(f"CVMFS is not mounted at {root}: cannot find {image_ref}")
    if not path.is_dir():
        repository = Path(root) / UNPACKED_REPOSITORY
        where = "" if repository.is_dir() else f" ({repository} does not exist: is the repository mounted?)"
        raise CvmfsImageError(
            f"{image_ref} is not published on CVMFS: {path} does not exist{where}; "
            "add it to cvmfs/recipe.yaml and wait for the next publication"
        )
    return path


def facility_root(fac: Facility) -> str:
    return fac.data.cvmfs_root if fac.data else DEFAULT_ROOT


def image_path(fac: Facility, image: str | Image, check: bool = True) -> Path:
    """Path of a facility image (by name or Image): its own ``cvmfs`` key, else derived from its registry."""
    if isinstance(image, str):
        try:
            image = fac.image(image)
        except KeyError as exc:
            raise CvmfsImageError(str(exc.args[0])) from None
    if image.cvmfs:
        path = Path(image.cvmfs)
        if check and not path.is_dir():
            raise CvmfsImageError(f"image {image.name!r}: its cvmfs path {path} does not exist")
        return path
    root = facility_root(fac)
    return resolve(image.registry, root) if check else cvmfs_path(image.registry, root)


def recipe_images(recipe_file: str | Path) -> list[str]:
    """Image references a DUCC wishlist (cvmfs/recipe.yaml) publishes, without their https:// scheme."""
    import yaml

    recipe = yaml.safe_load(Path(recipe_file).read_text())
    if not isinstance(recipe, dict) or recipe.get("cvmfs_repo") != UNPACKED_REPOSITORY:
        raise CvmfsImageError(f"{recipe_file}: not a DUCC recipe for {UNPACKED_REPOSITORY} (cvmfs_repo)")
    images = []
    for entry in recipe.get("input") or []:
        reference = str(entry).split("://", 1)[-1]
        cvmfs_path(reference)  # refuses malformed references
        images.append(reference)
    return images
