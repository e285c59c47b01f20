"""The base image the Containerfile builds FROM, made here since no registry can be pulled from.

`debootstrap --variant=minbase bookworm` with Debian's python3 (3.11, as the lock needs),
python3-venv and ca-certificates, imported into buildah's storage as `localhost/af-base:<key>`.
The key hashes this recipe, so a changed package list makes a new base.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from images.buildah import Buildah

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bump when the steps below change in a way the package list does not show.
RECIPE_VERSION = "1"


def key() -> str:
    recipe = f"{RECIPE_VERSION} {SUITE} {' '.join(PACKAGES)} {PATH}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def image_name() -> str:
    return f"localhost/af-base:{SUITE}-{key()}"


def mirror() -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if source.is_file():
            match = re.search(r"https?://\S+/debian/?(?=\s|$)", source.read_text(), flags=re.MULTILINE)
            if match:
                return match.group(0)
    return DEFAULT_MIRROR


def ensure(buildah: Buildah, work: Path) -> tuple[str, float | None]:
    """The base image's name, and the seconds spent building it (None when it was already there)."""
    name = image_name()
    if buildah.image_id(name):
        return name, None
    started = time.monotonic()
    rootfs = work / "base-rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "debootstrap.log"
    print(f"images: debootstrap --variant=minbase {SUITE} ({', '.join(PACKAGES)}) from {mirror()}", flush=True)
    with log.open("w") as out:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, rootfs, mirror()],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    subprocess.run(["chroot", rootfs, "apt-get", "clean"], check=True)
    for cached in (rootfs / "var/lib/apt/lists").glob("*_*"):
        cached.unlink()
    archive = work / "base-rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    container = buildah.run("from", "scratch")
    try:
        buildah.run("add", container, archive, "/")
        buildah.run("config", "--env", f"PATH={PATH}", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", container)
        buildah.run("commit", "--quiet", container, name)
    finally:
        buildah.run("rm", container)
        archive.unlink(missing_ok=True)
        shutil.rmtree(rootfs, ignore_errors=True)
    return name, time.monotonic() - started
