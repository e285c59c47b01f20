"""buildah, run with the facility's own image storage (outside the repository) and chroot isolation.

This machine kind has no registry to pull from and cgroups v1; buildah 1.28 from Debian builds
here with `--isolation chroot` and the overlay storage driver, in a storage root of its own so
nothing else's images are touched.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILDAH = "buildah"


@dataclass(frozen=True)
class Buildah:
    storage: Path  # images and layers (--root)
    run_root: Path  # buildah's lock and mount state (--runroot)
    program: str = BUILDAH

    def argv(self, *args: str | Path) -> list[str]:
        return [
            self.program,
            "--root",
            str(self.storage),
            "--runroot",
            str(self.run_root),
            "--storage-driver",
            "overlay",
            *map(str, args),
        ]

    def run(self, *args: str | Path, quiet: bool = True) -> str:
        """Run buildah; its output is returned (quiet) or streamed to ours (a build's log)."""
        if quiet:
            done = subprocess.run(self.argv(*args), capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"buildah {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()[-2000:]}")
            return done.stdout.strip()
        subprocess.run(self.argv(*args), check=True)
        return ""

    def image_id(self, name: str) -> str | None:
        """The image's id, None when this storage has no such image."""
        done = subprocess.run(
            self.argv("inspect", "--type", "image", "--format", "{{.FromImageID}}", name),
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() or None if done.returncode == 0 else None

    def image_config(self, name: str) -> dict[str, Any]:
        """The image's OCI configuration (Env, Cmd, WorkingDir, User, ...)."""
        inspected = json.loads(self.run("inspect", "--type", "image", name))
        return dict(inspected["OCIv1"].get("config") or {})
