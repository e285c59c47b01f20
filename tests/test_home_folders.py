"""facility.home_folders: the facility never opens a home folder for its accounts (issue 17).

Run against this host's real /root and account database; nothing is granted when the test passes.
"""

from __future__ import annotations

import pwd
import subprocess
import tempfile
from pathlib import Path

import pytest

from facility.accounts import grant_traverse
from facility.home_folders import HomeFolderError, home_folders

pytestmark = pytest.mark.no_facility


def _acl(path: Path) -> str:
    return subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_a_path_in_roots_home_is_refused_in_words_and_nothing_is_granted() -> None:
    before = _acl(Path("/root"))
    with tempfile.TemporaryDirectory(dir="/root") as inside:
        needed = Path(inside) / "state" / "tokens"
        needed.mkdir(parents=True)
        with pytest.raises(HomeFolderError) as refused:
            grant_traverse([needed], "af-users")
        assert f"{needed} lies in the home folder /root" in str(refused.value)
        assert "AF_STATE_DIR" in str(refused.value)  # says what to do
        assert "af-users" not in _acl(Path(inside))  # nothing granted below it on the way up either
    assert _acl(Path("/root")) == before


def test_home_folders_are_roots_and_peoples_not_system_accounts() -> None:
    def people() -> set[Path]:
        return {Path(e.pw_dir).resolve() for e in pwd.getpwall() if 1000 <= e.pw_uid < 65534}

    # Other tests add and remove accounts meanwhile: check the people present before and after.
    before = people()
    homes = home_folders()
    stayed = {home for home in before & people() if home.is_dir()}
    assert Path("/root") in homes
    assert Path(pwd.getpwnam("nobody").pw_dir) not in homes  # /nonexistent, a system account's
    assert all(home != Path("/") for home in homes)
    assert stayed <= homes
