"""Publish built images unpacked, laid out as DUCC lays out unpacked.cern.ch.

Each image's root file system is copied once into `<root>/unpacked.cern.ch/.flat/<id[:2]>/<id>`
(the image id names it, so a rebuild never changes a tree a running job uses), and each reference
`<root>/unpacked.cern.ch/<registry>/<repository>:<tag>` is a symbolic link to it, replaced
atomically when the reference moves to a new build; facility/cvmfs.py resolves these paths.
As DUCC does, the image's environment (its ENV lines) is written to
`.singularity.d/env/10-docker2singularity.sh` in the tree, which Apptainer sources and the
bubblewrap runtime (backends/common/container.py) sources too.

`<root>/unpacked.cern.ch/.af-catalogue.json` lists what is published: reference, tree, image id,
build key, lock hash, sizes, and the tree the reference pointed to before (kept, so jobs started
from the former build go on and an old worker image stays at hand; older trees are removed).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from facility import cvmfs
from images.buildah import Buildah

CATALOGUE = ".af-catalogue.json"
ENV_FILE = ".singularity.d/env/10-docker2singularity.sh"
MARKER = ".af-published.json"  # written last: a tree without it is incomplete


def repository(root: Path) -> Path:
    return root / cvmfs.UNPACKED_REPOSITORY


def flat_tree(root: Path, image_id: str) -> Path:
    return repository(root) / ".flat" / image_id[:2] / image_id


def environment_script(config: dict[str, Any]) -> str:
    lines = ["#!/bin/sh", "# The image's ENV lines (OCI config), as DUCC writes them for Apptainer."]
    for item in config.get("Env") or []:
        name, _, value = item.partition("=")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def unpack(buildah: Buildah, image: str, tree: Path) -> None:
    """Copy the image's root file system to `tree` (through a buildah mount), with its env file."""
    partial = tree.with_name(tree.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    container = buildah.run("from", "--pull-never", image)
    try:
        mounted = buildah.run("mount", container)
        subprocess.run(["cp", "-a", "--reflink=auto", f"{mounted}/.", str(partial)], check=True)
    finally:
        buildah.run("rm", container)
    env_file = partial / ENV_FILE
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(environment_script(buildah.image_config(image)))
    env_file.chmod(0o755)
    if tree.exists():
        shutil.rmtree(tree)
    partial.rename(tree)


def tree_bytes(tree: Path) -> int:
    done = subprocess.run(["du", "-sb", str(tree)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def link(root: Path, reference: str, tree: Path) -> tuple[Path, str | None]:
    """Point the reference's path at the tree (a relative link, so the root can move); the path,
    and the tree it pointed to before when that was another."""
    path = cvmfs.cvmfs_path(reference, root)
    before = str(path.resolve()) if path.is_symlink() and path.resolve() != tree.resolve() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_name(path.name + ".new")
    new.unlink(missing_ok=True)
    new.symlink_to(os.path.relpath(tree, path.parent))
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(new, path)
    return path, before


def open_to_every_account(root: Path, paths: list[Path]) -> None:
    """The folders from `root` down to each of `paths` can be listed and entered by any account
    (the jobs of per-user accounts run the trees), whatever the publisher's umask."""
    for path in paths:
        for folder in [path, *path.parents]:
            if not folder.is_relative_to(root):
                break
            mode = folder.stat().st_mode & 0o7777
            if mode & 0o555 != 0o555:
                folder.chmod(mode | 0o555)


def publish(
    buildah: Buildah, record: dict[str, Any], root: Path, known: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Publish one built target under every reference it has; the catalogue entries (`known`: the
    catalogue's entries so far, by reference)."""
    image_id = record["image_id"]
    tree = flat_tree(root, image_id)
    marker = tree / MARKER
    if not marker.is_file():
        started = time.monotonic()
        unpack(buildah, record["tag"], tree)
        facts = {"image_id": image_id, "unpacked_bytes": tree_bytes(tree), "unpack_seconds": 0.0}
        facts["unpack_seconds"] = round(time.monotonic() - started, 1)
        marker.write_text(json.dumps(facts, indent=2) + "\n")
    facts = json.loads(marker.read_text())
    open_to_every_account(root, [tree])
    entries = []
    for reference in record["references"]:
        path, before = link(root, reference, tree)
        open_to_every_account(root, [path.parent])
        previous = before or (known.get(reference) or {}).get("previous_tree")
        entries.append(
            {
                "reference": reference,
                "path": str(path),
                "tree": str(tree),
                "image_id": image_id,
                "key": record["key"],
                "lock_sha256": record["lock_sha256"],
                "built_at": record["built_at"],
                "oci_bytes": record.get("oci_bytes"),
                "unpacked_bytes": facts["unpacked_bytes"],
                "previous_tree": previous if previous != str(tree) else None,
            }
        )
    return entries


def write_catalogue(root: Path, entries: list[dict[str, Any]]) -> Path:
    """Merge `entries` into the catalogue (other references stay listed); written atomically."""
    path = repository(root) / CATALOGUE
    known = {e["reference"]: e for e in read_catalogue(root)}
    known.update({e["reference"]: e for e in entries})
    new = path.with_name(path.name + ".new")
    new.write_text(json.dumps({"images": sorted(known.values(), key=lambda e: e["reference"])}, indent=2) + "\n")
    new.chmod(0o644)
    os.replace(new, path)
    return path


def read_catalogue(root: Path) -> list[dict[str, Any]]:
    path = repository(root) / CATALOGUE
    return list(json.loads(path.read_text())["images"]) if path.is_file() else []


def prune(root: Path) -> list[Path]:
    """Remove the flat trees no reference of the catalogue points to now or pointed to before."""
    kept = set()
    for entry in read_catalogue(root):
        kept |= {entry["tree"], entry.get("previous_tree")}
    removed = []
    for tree in sorted((repository(root) / ".flat").glob("*/*")):
        if str(tree) not in kept:
            shutil.rmtree(tree)
            removed.append(tree)
            if not any(tree.parent.iterdir()):
                tree.parent.rmdir()
    return removed
