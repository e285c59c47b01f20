"""The facility's own data lake: an XRootD origin and the XCaches in front of it, from facility.yaml.

When facility.yaml's origin (or a cache) is on loopback, `af up` runs it: this module plans their
ports and folders (recorded in runtime.json), writes their XRootD configuration files into the
state folder and describes the processes supervisord runs. Every XRootD directive the project
uses is written here, in one place; `auth_directives` is where token authorisation goes.

XRootD refuses to run as root. Started by root, it runs as `nobody`, with only the capability to
read and traverse folders (CAP_DAC_READ_SEARCH), so it can export a data lake that lives in a
private folder (root's home, a test's temporary folder); the cache folder is handed to `nobody`.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from facility import data_tokens
from facility.model import Facility
from facility.runtime import Runtime

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UNPRIVILEGED_USER = "nobody"
ORIGIN_NAME = "xrootd-origin"
# Offsets in the facility's port block (af.runtime: public +0..+2, gateways +10 upwards).
ORIGIN_PORT_OFFSET = 3
FIRST_CACHE_PORT_OFFSET = 4
MAX_MANAGED_CACHES = 6
# XCache tuning, directive (with its sub-option, e.g. "pss.setopt WorkerThreads") -> value; the best
# of benchmarks/xcache_sweep.py (results/xcache_sweep.json). pfc.ram below 1g is refused by XRootD
# 5.5; 1 MiB blocks suit ROOT's basket reads (4m and 16m were slower cold); prefetching 32 blocks
# (default 10) and 4 streams to the origin read a cold file faster over a 25 ms link; prefetch 0
# fell to 0.34 of a direct read there.
CACHE_TUNING: dict[str, str] = {
    "pfc.ram": "1g",
    "pfc.blocksize": "1m",
    "pfc.prefetch": "32",
    "pss.config streams": "4",
}


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def _port(url: str) -> int:
    return urlsplit(url).port or 1094


def cache_component_name(cache_name: str) -> str:
    return f"xcache-{cache_name}"


def plan_data(fac: Facility, state_root: Path, public_port: int | None) -> dict[str, Any]:
    """Effective data-lake URLs for runtime.json, and which servers this facility runs itself.

    With public_port (af up --port, as tests use) the servers this facility runs move into the
    facility's port block, so several facilities can run side by side; otherwise they listen on
    the ports of facility.yaml.
    """
    if fac.data is None:
        return {}
    origin_port = public_port + ORIGIN_PORT_OFFSET if public_port else _port(fac.data.origin_url)
    managed_origin = is_loopback(fac.data.origin_url)
    origin_url = f"root://127.0.0.1:{origin_port}" if managed_origin else fac.data.origin_url
    origin = {"url": origin_url, "managed": managed_origin}
    if managed_origin:
        origin.update(
            port=origin_port,
            local_root=str(Path(fac.data.origin_local_root or state_root / "data-lake").resolve()),
        )
    caches: dict[str, Any] = {}
    managed = [c for c in fac.data.caches if is_loopback(c.url)]
    if len(managed) > MAX_MANAGED_CACHES:
        raise ValueError(f"at most {MAX_MANAGED_CACHES} caches on loopback can run with the facility")
    for index, cache in enumerate(fac.data.caches):
        if cache not in managed:
            caches[cache.name] = {"url": cache.url, "managed": False}
            continue
        port = public_port + FIRST_CACHE_PORT_OFFSET + managed.index(cache) if public_port else _port(cache.url)
        root = cache.local_root or state_root / ("xcache" if index == 0 else f"xcache-{cache.name}")
        caches[cache.name] = {
            "url": f"root://127.0.0.1:{port}",
            "managed": True,
            "port": port,
            "local_root": str(Path(root).resolve()),
        }
    return {
        "origin": origin,
        "caches": caches,
        "prefixes": list(fac.data.prefixes),
        "backend_caches": {b.name: b.data_cache for b in fac.backends if b.data_cache},
        "require_token": fac.data.require_token,
    }


def auth_directives(role: str) -> list[str]:
    """Authorisation directives for the origin or a cache ("origin" / "cache").

    Empty: the embedded data lake is on loopback and open to local readers. Token authorisation
    (SciTokens / WLCG tokens from the facility's OIDC provider) adds its `sec.protocol`, `ofs.authlib`
    and `acc.authdb` lines here.
    """
    return []


def _common(port: int, local_root: str, admin: Path, exports: list[str]) -> list[str]:
    return [
        f"xrd.port {port}",
        "xrd.network nodnr",  # loopback: no reverse-DNS lookups of clients
        # XRootD 5.5 listens on every interface and has no bind address: the servers the facility
        # runs are on loopback, so every other host is refused at connection time.
        "xrd.allow host localhost",
        f"oss.localroot {local_root}",
        # Read-only in XRootD's own view, not only through the files' modes.
        *[f"all.export {prefix} r/o" for prefix in exports],
        f"all.adminpath {admin}",
        f"all.pidpath {admin}",
    ]


def origin_config(origin: dict[str, Any], prefixes: list[str], admin: Path) -> str:
    lines = ["# XRootD origin (the data lake), written by `af up` from facility.yaml; edits are overwritten."]
    lines += _common(origin["port"], origin["local_root"], admin, prefixes or ["/"])
    lines += auth_directives("origin")
    return "\n".join(lines) + "\n"


def cache_config(
    cache: dict[str, Any], origin_url: str, prefixes: list[str], admin: Path, tuning: dict[str, str] | None = None
) -> str:
    """The XCache's configuration; `tuning` overrides CACHE_TUNING's directives (benchmarks sweep them)."""
    parts = urlsplit(origin_url)
    lines = ["# XCache (XRootD proxy file cache), written by `af up` from facility.yaml; edits are overwritten."]
    lines += _common(cache["port"], cache["local_root"], admin, prefixes or ["/"])
    lines += [
        "ofs.osslib libXrdPss.so",
        f"pss.origin {parts.hostname}:{parts.port or 1094}",
        "pss.cachelib libXrdPfc.so",
        *[f"{directive} {value}" for directive, value in {**CACHE_TUNING, **(tuning or {})}.items()],
    ]
    lines += auth_directives("cache")
    return "\n".join(lines) + "\n"


def config_dir(runtime: Runtime) -> Path:
    return runtime.state_path / "xrootd"


def admin_dir(runtime: Runtime) -> Path:
    """XRootD's admin folder (Unix sockets, pid files, event FIFOs), one per facility instance.

    Not in the state folder: XRootD checks these paths with access(), which ignores the capability
    that lets it traverse a private state folder, and socket paths must be short. Not a predictable
    name in the world-writable /tmp either (another account could make it first): under /run when
    the facility runs as root, else under the user's $XDG_RUNTIME_DIR, else /tmp with its owner
    checked (prepare_admin_dir).
    """
    digest = hashlib.sha256(runtime.state_dir.encode()).hexdigest()[:12]
    if os.geteuid() == 0:
        return Path("/run/analysis-facility") / f"xrd-{digest}"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"af-xrd-{digest}"


def prepare_admin_dir(admin: Path) -> None:
    """Create the admin folder, private to the account XRootD runs as; refuse one made by someone else."""
    admin.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.mkdir(admin, 0o700)
    except FileExistsError:
        info = os.lstat(admin)
        owners = {os.geteuid()} | ({pwd.getpwnam(UNPRIVILEGED_USER).pw_uid} if os.geteuid() == 0 else set())
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
            raise XRootDSetupError(
                f"{admin} exists but was not made by the facility (owner uid {info.st_uid}, or not a folder); "
                "remove it, or stop whoever made it"
            ) from None
        admin.chmod(0o700)
    _hand_over(admin)


class XRootDSetupError(RuntimeError):
    """A folder XRootD needs cannot be made safely."""


def origin_root_extras(local_root: Path, prefixes: list[str]) -> list[str]:
    """Entries at the top of the origin's folder that no export covers.

    XRootD refuses to open `..` paths but lists `/store/..`: the names of whatever else lies
    beside the exported folders would be visible to every reader.
    """
    tops = {prefix.strip("/").split("/")[0] for prefix in prefixes or ["/"]}
    if "" in tops or not local_root.is_dir():
        return []
    return sorted(entry.name for entry in local_root.iterdir() if entry.name not in tops)


def remove_admin_dir(runtime: Runtime | None) -> None:
    """After the servers stopped: their sockets and pid files in the temporary folder go too."""
    if runtime and managed_servers(runtime):
        shutil.rmtree(admin_dir(runtime), ignore_errors=True)


def managed_servers(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    """(component name, settings) of each XRootD server this facility runs, origin first."""
    data = runtime.data
    servers = []
    if data.get("origin", {}).get("managed"):
        servers.append((ORIGIN_NAME, data["origin"]))
    servers += [(cache_component_name(name), c) for name, c in data.get("caches", {}).items() if c.get("managed")]
    return servers


def _drop_privileges_argv() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise FileNotFoundError("setpriv (util-linux) is needed to run XRootD as root's facility")
    return [
        setpriv,
        f"--reuid={UNPRIVILEGED_USER}",
        f"--regid={pwd.getpwnam(UNPRIVILEGED_USER).pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]


def server_command(xrootd: str, runtime: Runtime, name: str) -> list[str]:
    # Foreground, logging to stdout: supervisord keeps the log and restarts it.
    return [*_drop_privileges_argv(), xrootd, "-c", str(config_dir(runtime) / f"{name}.cfg"), "-n", name]


def _hand_over(path: Path) -> None:
    """Make a folder XRootD writes into belong to the unprivileged user it runs as."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def write_configs(runtime: Runtime) -> list[Path]:
    """Create the servers' folders and write their configuration files; returns the files."""
    data = runtime.data
    written = []
    config_dir(runtime).mkdir(parents=True, exist_ok=True)
    data_tokens.prepare(runtime)  # secret, TLS and service token when data.require_token
    admin = admin_dir(runtime)
    prepare_admin_dir(admin)
    for name, server in managed_servers(runtime):
        root = Path(server["local_root"])
        root.mkdir(parents=True, exist_ok=True)
        if name == ORIGIN_NAME:
            text = origin_config(server, data.get("prefixes", []), admin)
            for prefix in data.get("prefixes") or []:
                (root / prefix.strip("/")).mkdir(parents=True, exist_ok=True)
        else:
            _hand_over(root)
            text = cache_config(server, data["origin"]["url"], data.get("prefixes", []), admin)
        path = config_dir(runtime) / f"{name}.cfg"
        text += "".join(f"{line}\n" for line in data_tokens.server_directives(runtime))
        path.write_text(text)
        written.append(path)
    return written
