"""One lock file for the notebook and Dask worker images, and the version-skew check.

The skew check runs against a real Dask cluster (scheduler and workers as processes); the planted
mismatch is a worker whose environment reports another awkward version (a dist-info folder ahead
on its PYTHONPATH), which is what a worker built from another image looks like to distributed.
The images themselves are built and run in tests/test_image_build.py (buildah, bubblewrap).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from distributed import Client, LocalCluster

from dask_backends.versions import (
    VersionSkewError,
    check_cluster,
    check_installed,
    installed_versions,
    main,
    read_lock,
)
from tests.kube_helpers import ROOT

pytestmark = pytest.mark.no_facility

LOCK = ROOT / "images" / "requirements.lock"


def test_this_environment_matches_the_lock():
    """The hub/notebook environment here was installed from the same pins the lock records."""
    check_installed(read_lock(LOCK))
    assert main([str(LOCK)]) == 0


def test_lock_holds_the_analysis_stack_at_pyproject_pins():
    locked = read_lock(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *project["optional-dependencies"]["analysis"]]
    for line in pins:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)$", line)
        if match:
            assert locked[match.group(1).lower()] == match.group(3), line
    for name in ("dask", "distributed", "coffea", "uproot", "awkward"):
        assert name in locked


def test_lock_agrees_with_what_make_lock_writes():
    """make_lock.py walks pyproject's pins in this environment; where both name a package, they agree."""
    written = subprocess.run(
        [sys.executable, str(ROOT / "images" / "make_lock.py")], capture_output=True, text=True, check=True
    ).stdout
    fresh = dict(line.split("==") for line in written.splitlines() if not line.startswith("#"))
    locked = read_lock(LOCK)
    stale = {name: (locked[name], version) for name, version in fresh.items() if locked.get(name, version) != version}
    assert not stale, f"images/requirements.lock is stale (lock, installed): {stale}; run images/make_lock.py"
    assert {"dask", "distributed", "coffea", "uproot", "awkward"} <= fresh.keys()


def test_planted_lock_mismatch_is_reported(tmp_path):
    text = LOCK.read_text()
    awkward = installed_versions(["awkward"])["awkward"]
    planted = tmp_path / "requirements.lock"
    planted.write_text(text.replace(f"awkward=={awkward}\n", "awkward==2.13.0\n"))
    with pytest.raises(VersionSkewError, match=rf"awkward: lock file has 2.13.0, installed is {re.escape(awkward)}"):
        check_installed(read_lock(planted))
    assert main([str(planted)]) == 1
    (tmp_path / "empty.lock").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no name==version lines"):
        read_lock(tmp_path / "empty.lock")


def test_every_image_installs_the_one_lock():
    containerfile = (ROOT / "images" / "Containerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", containerfile, flags=re.MULTILINE)
    assert stages == ["base", "dask-worker", "notebook"]
    assert "FROM base AS dask-worker" in containerfile and "FROM base AS notebook" in containerfile
    assert "pip install --no-deps -r /opt/af/requirements.lock" in containerfile
    assert "COPY images/requirements.lock" in containerfile
    for name, image in yaml.safe_load((ROOT / "images" / "images.yaml").read_text()).items():
        assert image["target"] in stages, name
    # Every package of the project is in the images (pyproject's package list).
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (pattern.rstrip("*") for pattern in include):
        assert f"COPY {package} /src/{package}\n" in containerfile, f"images/Containerfile does not copy {package}/"


@pytest.fixture(scope="module")
def cluster():
    # The nanny applies distributed.nanny.pre-spawn-environ (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ...)
    # to its own process, here pytest's: put the environment back for the tests and facilities after this one.
    saved = dict(os.environ)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local:
            yield local
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_matching_cluster_has_no_skew(cluster):
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        check_cluster(client, lock=read_lock(LOCK))


def test_worker_from_another_image_is_caught(cluster, tmp_path):
    planted = tmp_path / "site"
    info = planted / "awkward-2.13.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: awkward\nVersion: 2.13.0\n")
    env = {**os.environ, "PYTHONPATH": f"{planted}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            cluster.scheduler_address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--no-nanny",
            "--name",
            "planted",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            with pytest.raises(VersionSkewError) as error:
                check_cluster(client)
            message = str(error.value)
            assert "version skew in the Dask cluster" in message
            awkward = installed_versions(["awkward"])["awkward"]
            line = next(d for d in error.value.differences if d.startswith("awkward:"))
            assert f"client {awkward}" in line and f"scheduler {awkward}" in line and "2.13.0" in line
            assert not any(d.startswith(("dask:", "distributed:")) for d in error.value.differences)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
