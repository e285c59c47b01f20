"""Version skew between a notebook, its Dask scheduler and workers, and the images' lock file.

The notebook and Dask worker images install the same lock file (images/requirements.lock), so a
cluster started from the facility runs one set of versions. This check proves it at run time:

    from dask_backends.versions import check_cluster
    check_cluster(client)              # raises VersionSkewError naming every difference

and against the lock (in tests, in image builds and with ``python -m dask_backends.versions``):

    check_installed(read_lock("images/requirements.lock"))
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# What must be equal everywhere: Dask's own wire protocol and the analysis stack's data types.
CHECKED_PACKAGES = (
    "dask",
    "distributed",
    "coffea",
    "uproot",
    "awkward",
    "numpy",
    "cloudpickle",
    "msgpack",
    "toolz",
)
DEFAULT_LOCK = Path(__file__).resolve().parent.parent / "images" / "requirements.lock"
_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


class VersionSkewError(RuntimeError):
    """Two parts of a Dask cluster (or an environment and its lock) run different versions."""

    def __init__(self, what: str, differences: list[str]):
        self.differences = differences
        listing = "\n".join(f"  - {d}" for d in differences)
        super().__init__(
            f"version skew {what}:\n{listing}\n"
            "The notebook and the Dask workers must use the same image (built from images/requirements.lock)."
        )


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = DEFAULT_LOCK) -> dict[str, str]:
    """name -> version of a ``name==version`` lock file (comments and hashes ignored)."""
    locked = {}
    for line in Path(path).read_text().splitlines():
        match = _LOCK_LINE.match(line.strip())
        if match:
            locked[normalize(match.group(1))] = match.group(2)
    if not locked:
        raise ValueError(f"{path}: no name==version lines; is it a lock file?")
    return locked


def installed_versions(packages: Iterable[str] = CHECKED_PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[normalize(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[normalize(name)] = None
    return found


def lock_skew(locked: Mapping[str, str], installed: Mapping[str, str | None]) -> list[str]:
    """Differences between a lock and the versions an environment reports, for the packages it reports."""
    problems = []
    for name, version in installed.items():
        want = locked.get(normalize(name))
        if want is None:
            problems.append(f"{name} {version} is not in the lock file")
        elif version != want:
            problems.append(f"{name}: lock file has {want}, installed is {version or 'nothing'}")
    return problems


def check_installed(locked: Mapping[str, str], packages: Iterable[str] = CHECKED_PACKAGES) -> None:
    problems = lock_skew(locked, installed_versions(packages))
    if problems:
        raise VersionSkewError("between this environment and the lock file", problems)


def cluster_skew(versions: Mapping[str, Any], packages: Iterable[str] = CHECKED_PACKAGES) -> list[str]:
    """Differences in distributed's ``Client.get_versions()`` output: each package, client vs the others."""
    parts: dict[str, Mapping[str, Any]] = {"client": versions["client"]["packages"]}
    parts["scheduler"] = versions["scheduler"]["packages"]
    for address, info in sorted((versions.get("workers") or {}).items()):
        parts[f"worker {address}"] = info["packages"]
    problems = []
    for name in ("python", *packages):
        seen = {part: reported.get(name) for part, reported in parts.items()}
        if len(set(seen.values())) > 1:
            listing = ", ".join(f"{part} {version or 'missing'}" for part, version in seen.items())
            problems.append(f"{name}: {listing}")
    return problems


def check_cluster(
    client: Any, packages: Iterable[str] = CHECKED_PACKAGES, lock: Mapping[str, str] | None = None
) -> None:
    """Raise VersionSkewError if the client, scheduler and workers differ (or differ from `lock`)."""
    packages = tuple(packages)
    versions = client.get_versions(check=False, packages=list(packages))
    problems = cluster_skew(versions, packages)
    if lock is not None:
        problems += [f"client: {p}" for p in lock_skew(lock, _only(versions["client"]["packages"], packages))]
    if problems:
        raise VersionSkewError("in the Dask cluster", problems)


def _only(reported: Mapping[str, Any], packages: Iterable[str]) -> dict[str, str | None]:
    return {normalize(p): reported.get(p) for p in packages}


def main(argv: list[str] | None = None) -> int:
    """``python -m dask_backends.versions [LOCK]``: check this environment against the lock."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_installed(read_lock(args[0] if args else DEFAULT_LOCK))
    except (VersionSkewError, OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print("no version skew against the lock file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
