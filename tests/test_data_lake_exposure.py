"""The data lake stays off the network and read-only: the XRootD origin and cache `af up` runs refuse
other hosts and writes, keep their admin folder private, and warn about names beside the exports."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from af import xrootd
from facility.runtime import Runtime
from tests.harness import RunningFacility

# A refused client gives up after one quick try instead of retrying for minutes.
QUICK_CLIENT = {
    "XRD_CONNECTIONRETRY": "1",
    "XRD_REQUESTTIMEOUT": "5",
    "XRD_STREAMTIMEOUT": "5",
    "XRD_TIMEOUTRESOLUTION": "1",
}


def _xrd(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=60, env={**os.environ, **QUICK_CLIENT}, check=False
    )


def _non_loopback_address() -> str:
    """This machine's address on its network (what another host would connect to)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    assert not address.startswith("127."), "this test needs a network interface besides loopback"
    return address


def _servers(embedded: RunningFacility) -> dict[str, int]:
    data = embedded.runtime["data"]
    return {"origin": data["origin"]["port"], "cache": data["caches"]["local-xcache"]["port"]}


def test_origin_and_cache_refuse_other_hosts(embedded: RunningFacility) -> None:
    address = _non_loopback_address()
    for name, port in _servers(embedded).items():
        assert _xrd("xrdfs", f"127.0.0.1:{port}", "ls", "/store/").returncode == 0, name
        remote = _xrd("xrdfs", f"{address}:{port}", "ls", "/store/")
        assert remote.returncode != 0, f"the {name} answered {address}: {remote.stdout}"


def test_origin_and_cache_refuse_writes(embedded: RunningFacility, tmp_path: Path) -> None:
    upload = tmp_path / "upload.root"
    upload.write_bytes(b"not data")
    origin_root = Path(embedded.runtime["data"]["origin"]["local_root"])
    for name, port in _servers(embedded).items():
        result = _xrd("xrdcp", "-f", str(upload), f"root://127.0.0.1:{port}//store/af/upload-{name}.root")
        assert result.returncode != 0, name
        assert not (origin_root / "store" / "af" / f"upload-{name}.root").exists()
    origin = _xrd("xrdcp", "-f", str(upload), f"root://127.0.0.1:{_servers(embedded)['origin']}//store/af/x.root")
    assert "read/only" in origin.stderr


def test_admin_folder_is_private_to_xrootd(embedded: RunningFacility) -> None:
    admin = xrootd.admin_dir(Runtime.from_dict(embedded.runtime))
    assert admin.parent == Path("/run/analysis-facility")  # not a name anyone can take first in /tmp
    info = admin.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == int(
        subprocess.run(["id", "-u", xrootd.UNPRIVILEGED_USER], capture_output=True, text=True, check=True).stdout
    )


def test_admin_folder_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "af-xrd-planted"
    planted.mkdir()
    os.chown(planted, 12345, 12345)  # another account made it first
    with pytest.raises(xrootd.XRootDSetupError, match="was not made by the facility"):
        xrootd.prepare_admin_dir(planted)
    link = tmp_path / "af-xrd-link"
    link.symlink_to(tmp_path)
    with pytest.raises(xrootd.XRootDSetupError):
        xrootd.prepare_admin_dir(link)


def test_names_beside_the_exports_are_reported(tmp_path: Path) -> None:
    (tmp_path / "store" / "af").mkdir(parents=True)
    assert xrootd.origin_root_extras(tmp_path, ["/store/"]) == []
    (tmp_path / "private-notes.txt").write_text("x")
    assert xrootd.origin_root_extras(tmp_path, ["/store/"]) == ["private-notes.txt"]
    assert xrootd.origin_root_extras(tmp_path, ["/"]) == []  # the whole folder is exported anyway
