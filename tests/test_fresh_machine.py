"""What keeps `make test` honest on a fresh machine: chroot paths resolved inside the chroot, outside
environments rebuilt when CI asks or their scripts change, test facilities on their own ports."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT, embedded_raw, run_af, write_facility
from tests.htcondor_pool import host_path, write_inside

OUTSIDE = ROOT / "scripts" / "lib" / "outside.sh"


def test_absolute_links_in_a_chroot_resolve_inside_it(tmp_path: Path) -> None:
    chroot = tmp_path / "chroot"
    (chroot / "run" / "lock").mkdir(parents=True)
    (chroot / "var").mkdir()
    (chroot / "var" / "lock").symlink_to("/run/lock")  # as in Debian 13
    (chroot / "etc").mkdir()
    (chroot / "etc" / "alt").symlink_to("../run/./lock/../lock")
    assert host_path(chroot, "/var/lock/condor") == chroot.resolve() / "run" / "lock" / "condor"
    assert host_path(chroot, "/etc/alt/x") == chroot.resolve() / "run" / "lock" / "x"
    assert host_path(chroot, "/../../etc/passwd") == chroot.resolve() / "etc" / "passwd"  # never above the root
    write_inside(chroot, "/var/lock/condor/marker", "inside")
    assert (chroot / "run" / "lock" / "condor" / "marker").read_text() == "inside"
    (chroot / "loop").symlink_to("/loop")
    with pytest.raises(RuntimeError, match="too many links"):
        host_path(chroot, "/loop/x")


def _outside(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source {OUTSIDE}; {script}"], capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.parametrize(
    ("stamp_file", "ci", "reusable", "why"),
    [
        (None, "", False, "not built yet"),
        ("abc", "", True, ""),
        ("abc", "true", False, "CI=true rebuilds it from scratch"),
        ("old", "", False, "its install script changed (stamp old -> abc)"),
    ],
)
def test_outside_environments_are_rebuilt_when_ci_asks_or_their_scripts_change(
    tmp_path: Path, stamp_file: str | None, ci: str, reusable: bool, why: str
) -> None:
    built = tmp_path / "env"
    if stamp_file is not None:
        built.mkdir()
        (built / ".af-stamp").write_text(stamp_file + "\n")
    env = {**os.environ, "CI": ci}
    assert (_outside(f"af_reusable {built} abc", env).returncode == 0) is reusable
    if not reusable:
        assert _outside(f"af_why_build {built} abc", env).stdout.strip() == why


def test_first_af_up_of_a_test_takes_ports_it_reserved(tmp_path: Path) -> None:
    """A facility started by `make up` may hold the embedded default port; test facilities never use it."""
    default_port = 8000
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", default_port))
        holder.listen()
    except OSError:
        holder.close()
        holder = None  # already held (by a `make up` facility, say): the same situation
    raw = embedded_raw()
    raw.pop("data")
    raw["backends"] = raw["backends"][:1]
    raw["backends"][0].pop("data_cache")
    state = tmp_path / "state"
    try:
        up = run_af(state, "up", "--facility", str(write_facility(tmp_path / "f.yaml", raw)), "--no-sample-data")
        assert f":{default_port}" not in up.stdout
        assert (state / "logs" / "hub.log").exists()
    finally:
        run_af(state, "down", check=False)
        if holder:
            holder.close()
