"""`make images`: build the notebook and Dask-worker images from images/Containerfile, publish them.

    .venv/bin/python -m images.build [--cache DIR] [--cvmfs-root DIR]

1. a base image from debootstrap (images/base.py), since no registry can be pulled from;
2. each target of images/images.yaml with `buildah bud --isolation chroot` from the real
   Containerfile, FROM that base;
3. an OCI image layout of both (what a registry would get; its blobs give the compressed size);
4. each image published unpacked, as DUCC does (images/publish.py).

Everything lives outside the repository, under ~/.cache/analysis-facility/images (or --cache,
$AF_IMAGES_CACHE); the images are published where the accounts that run them can read them
(default_cvmfs_root). A target is rebuilt only when its key changes: the hash of the lock, the
Containerfile, the base recipe and the project files the Containerfile copies. A second run with
nothing changed only checks the keys.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from images import base, publish
from images.buildah import Buildah

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "images" / "Containerfile"
LOCK = ROOT / "images" / "requirements.lock"
IMAGES_YAML = ROOT / "images" / "images.yaml"
DEFAULT_CACHE = Path.home() / ".cache" / "analysis-facility" / "images"
ENV_CVMFS_ROOT = "AF_IMAGES_CVMFS_ROOT"
# Root's images are run by the facility's per-user accounts, which never enter root's home (issue 17,
# facility/home_folders.py): root publishes beside the facility's state, as facility.runtime does.
SYSTEM_CVMFS_ROOT = Path("/var/lib/analysis-facility/cvmfs")
# Debian bookworm's Python is 3.11.2; soupsieve 4.1.3 of the lock declares Requires-Python >=3.11.5
# (the only one of the lock's pins that does; checked with pip's report). pip is told to install the
# lock's exact versions anyway; the tests import bs4 in the image.
PIP_INSTALL_OPTIONS = "--ignore-requires-python"
# The build's RUN steps reach PyPI through this host's TLS trust (an intercepting proxy's CA may be
# in it): the host's CA bundle is mounted for the build only, not copied into the image.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Target:
    name: str  # the Containerfile stage
    references: tuple[str, ...]  # every images.yaml reference built from it


def cache_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get("AF_IMAGES_CACHE") or DEFAULT_CACHE)


def default_cvmfs_root(cache: Path) -> Path:
    """Where `make images` publishes unless told (--cvmfs-root): $AF_IMAGES_CVMFS_ROOT, else for root
    /var/lib/analysis-facility/cvmfs (readable by every account), else <cache>/cvmfs (the user's own
    builds, run by the user)."""
    explicit = os.environ.get(ENV_CVMFS_ROOT)
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return SYSTEM_CVMFS_ROOT
    return cache / "cvmfs"


def targets(images_yaml: Path = IMAGES_YAML) -> list[Target]:
    by_target: dict[str, list[str]] = {}
    for image in yaml.safe_load(images_yaml.read_text()).values():
        by_target.setdefault(image["target"], []).append(image["reference"])
    return [Target(name, tuple(refs)) for name, refs in by_target.items()]


def copied_sources(containerfile: Path = CONTAINERFILE) -> list[Path]:
    """Every file of the build context a COPY line of the Containerfile names."""
    files: list[Path] = []
    for line in containerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY":
            continue
        for source in (w for w in words[1:-1] if not w.startswith("--")):
            path = ROOT / source
            found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            files += [p for p in found if "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
    return files


def build_key(target: str) -> str:
    digest = hashlib.sha256(f"{target} {base.key()} {PIP_INSTALL_OPTIONS}\n".encode())
    for path in [CONTAINERFILE, LOCK, *copied_sources()]:
        digest.update(f"{path.relative_to(ROOT)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def lock_versions(lock: Path = LOCK) -> dict[str, str]:
    pins = (line.split("==") for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line))
    return {name.lower(): version.strip() for name, version in pins}


class Builder:
    def __init__(self, cache: Path):
        self.cache = cache
        self.buildah = Buildah(storage=cache / "storage", run_root=Path("/run/analysis-facility-buildah"))
        self.state_file = cache / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def build(self, target: Target, base_image: str) -> dict[str, Any]:
        """Build one target unless its key is built already; its record in the state."""
        key = build_key(target.name)
        tag = f"localhost/af-{target.name}:{key}"
        record = self.state.get(target.name) or {}
        image_id = self.buildah.image_id(tag)
        if record.get("key") == key and image_id == record.get("image_id"):
            print(f"images: {target.name} is up to date ({tag})", flush=True)
            return {**record, "cached": True}
        print(f"images: buildah bud --target {target.name} (key {key})", flush=True)
        started = time.monotonic()
        argv = ["bud", "--isolation", "chroot", "--layers", "--target", target.name, "-f", CONTAINERFILE]
        argv += ["--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"PIP_INSTALL_OPTIONS={PIP_INSTALL_OPTIONS}"]
        if HOST_CA_BUNDLE.is_file():
            argv += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        for name in (tag, *target.references):
            argv += ["--tag", name]
        self.buildah.run(*argv, ROOT, quiet=False)
        record = {
            "key": key,
            "tag": tag,
            "image_id": self.buildah.image_id(tag),
            "references": list(target.references),
            "build_seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lock_sha256": hashlib.sha256(LOCK.read_bytes()).hexdigest(),
        }
        self.state[target.name] = record
        self.save()
        return {**record, "cached": False}

    def forget_old_builds(self) -> None:
        """Untag this storage's images of keys no target has now (their layers may stay as cache)."""
        current = {record["tag"] for record in self.state.values()}
        listed = json.loads(self.buildah.run("images", "--json") or "[]")
        for image in listed:
            for name in image.get("names") or []:
                ours = name.startswith("localhost/af-") and not name.startswith("localhost/af-base:")
                if ours and name not in current:
                    self.buildah.run("rmi", name)

    def oci_layout(self, record: dict[str, Any]) -> int:
        """Push the image into the cache's OCI layout (once per image id); its compressed bytes."""
        layout = self.cache / "oci"
        name = f"{layout}:{record['tag'].split('/', 1)[1]}"
        if record.get("oci_image_id") != record["image_id"] or not (layout / "index.json").exists():
            self.buildah.run("push", "--quiet", record["tag"], f"oci:{name}")
            record["oci_image_id"] = record["image_id"]
        return oci_size(layout, record["tag"].split(":")[-1])


def oci_size(layout: Path, tag: str) -> int:
    """Bytes of an image's manifest, config and (compressed) layers in an OCI image layout."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "").endswith(tag):
            manifest = json.loads(_blob(layout, entry["digest"]).read_text())
            parts = [entry, manifest["config"], *manifest["layers"]]
            return sum(int(part["size"]) for part in parts)
    raise LookupError(f"{layout}: no image tagged {tag}")


def _blob(layout: Path, digest: str) -> Path:
    algorithm, value = digest.split(":", 1)
    return layout / "blobs" / algorithm / value


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images.build", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help=f"build cache (default $AF_IMAGES_CACHE or {DEFAULT_CACHE})")
    parser.add_argument(
        "--cvmfs-root",
        help=f"where to publish unpacked (default ${ENV_CVMFS_ROOT}, for root {SYSTEM_CVMFS_ROOT}, else <cache>/cvmfs)",
    )
    parser.add_argument("--only", choices=[t.name for t in targets()], action="append", help="build only these")
    args = parser.parse_args(argv)
    cache = cache_dir(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cvmfs_root = Path(args.cvmfs_root) if args.cvmfs_root else default_cvmfs_root(cache)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time per cache (make images, the tests)
        return build_and_publish(cache, cvmfs_root, args.only)


def build_and_publish(cache: Path, cvmfs_root: Path, only: list[str] | None) -> int:
    started = time.monotonic()
    builder = Builder(cache)
    base_image, base_seconds = base.ensure(builder.buildah, cache / "work")
    if base_seconds is not None:
        print(f"images: base {base_image} built in {base_seconds:.0f} s", flush=True)
    published = []
    known = {e["reference"]: e for e in publish.read_catalogue(cvmfs_root)}
    for target in targets():
        if only and target.name not in only:
            continue
        record = builder.build(target, base_image)
        record["oci_bytes"] = builder.oci_layout(record)
        builder.state[target.name] = {k: v for k, v in record.items() if k != "cached"}
        builder.save()
        entries = publish.publish(builder.buildah, record, cvmfs_root, known)
        published += entries
        how = "from cache" if record["cached"] else f"built in {record['build_seconds']:.0f} s"
        print(
            f"images: {target.name} {how}; OCI {megabytes(record['oci_bytes'])} (compressed layers), "
            f"unpacked {megabytes(entries[0]['unpacked_bytes'])} at {entries[0]['path']}",
            flush=True,
        )
    catalogue = publish.write_catalogue(cvmfs_root, published)
    for tree in publish.prune(cvmfs_root):
        print(f"images: removed {tree}: no reference points to it now or before", flush=True)
    builder.forget_old_builds()
    print(f"images: catalogue {catalogue}; done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
