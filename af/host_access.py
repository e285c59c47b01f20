"""What `af up` prepares on the host so per-user accounts can run, and cannot read the facility's secrets.

With ``auth.unix_accounts.mode: per-user`` notebook servers and Dask processes run as the users'
own accounts (facility.accounts). They need to reach the Python of the venv, the project's code, their
token folder, their Dask cluster folder and the data lake's CA, which may all lie below private
folders (/root, a CI clone in a 0700 temporary folder). Each such folder gets an ACL entry that
lets the facility group pass through, not list. Everything else of the state folder (runtime.json
with the facility's secrets, the hub and gateway databases, logs, configuration) is made
unreadable for them: the state folder itself is 0700 plus that pass-through entry, and each of its
entries except the few users need is closed to group and others.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from af.components import PROJECT_ROOT
from facility import data_tokens
from facility.accounts import ensure_group, grant_traverse, require_root
from facility.home_folders import revoke_home_grants
from facility.model import Facility
from facility.runtime import Runtime

# Entries of the state folder that users' processes reach (each keeps its own, narrower modes):
# their token folders, their Dask cluster folders below gateways/, the data lake's CA below xrootd/.
# Not the examples repository: servers clone it over HTTP from the hub (hub_config/examples_http.py).
OPEN_ENTRIES = ("tokens", "gateways", "xrootd")
SECRET_FILES = ("runtime.json", "supervisord.conf", "jupyterhub.sqlite")


def local_clusters_dir(runtime: Runtime, gateway: str) -> Path:
    """The LocalBackend's clusters folder of a gateway, as gateway/gateway_config.py sets it."""
    return runtime.state_path / "gateways" / gateway / "clusters"


def check_can_run(fac: Facility) -> None:
    """Refuse per-user accounts without root, before anything starts (raises facility.accounts.AccountError)."""
    if fac.auth.unix_accounts.per_user:
        require_root("af up")


def needed_paths(runtime: Runtime, facility_file: Path) -> list[Path]:
    """The folders and files users' processes must reach, for grant_traverse."""
    state = runtime.state_path
    paths = [
        Path(sys.prefix),
        Path(os.path.realpath(sys.base_prefix)),  # the venv's python links into it (pyenv under /root)
        Path(os.path.realpath(sys.executable)).parent,
        PROJECT_ROOT,
        facility_file.parent,  # notebooks read facility.yaml ($AF_FACILITY)
        state / "tokens",
    ]
    paths += [local_clusters_dir(runtime, name) for name, gw in runtime.gateways.items() if gw.kind == "local"]
    if data_tokens.enabled(runtime):
        paths.append(data_tokens.ca_dir(runtime))  # $X509_CERT_DIR of the data-lake client
    return paths


def close_state(runtime: Runtime) -> None:
    """Make the state folder's secrets unreadable for users (the modes, before any grant)."""
    state = runtime.state_path
    state.chmod(0o700)
    for entry in state.iterdir():
        if entry.name in OPEN_ENTRIES or entry.is_symlink():
            continue
        entry.chmod(entry.stat().st_mode & 0o700)  # logs, data lake, caches, homes of shared mode, ...
    for name in SECRET_FILES:
        if (state / name).exists():
            (state / name).chmod(0o600)
    for folder in (state / "gateways").glob("*"):
        folder.chmod(0o700)
        for db in folder.glob("gateway.sqlite*"):
            db.chmod(0o600)
    tokens = state / "tokens"
    tokens.mkdir(exist_ok=True)
    tokens.chmod(0o711)  # users pass through to their own folder (root:<their group> 0750)


def prepare_host(fac: Facility, runtime: Runtime, facility_file: Path) -> list[Path]:
    """Per-user mode: facility group, closed state folder, pass-through grants; returns the granted folders."""
    if not fac.auth.unix_accounts.per_user:
        return []
    check_can_run(fac)
    group = fac.auth.unix_accounts.group
    ensure_group(group)
    for name, gw in runtime.gateways.items():
        if gw.kind == "local":
            local_clusters_dir(runtime, name).mkdir(mode=0o700, parents=True, exist_ok=True)
    close_state(runtime)
    for home in revoke_home_grants(group):
        print(f"Took back the facility group's pass-through entry on the home folder {home}")
    return grant_traverse(needed_paths(runtime, facility_file), group)
