"""A notebook server on the real Slurm runs from the published notebook image (issue 24).

`make images`' build (from its cache when nothing changed) publishes the images where the facility's
accounts can read them; a Slurm backend with `container_runtime: bubblewrap` runs alice's server
job from the image, as her own account. Checked from inside her server's kernel: the root file
system and the Python are the image's, the packages the lock's, and she is herself there (her
passwd entry, her home). Beside it, the same Slurm runs servers from the host's environment, so the
start-up times of both are measured in one run.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from dask_backends.versions import read_lock
from images import publish
from tests.batch_helpers import account_of, spawn_form
from tests.harness import ROOT, RunningFacility, embedded_raw, execute_in_kernel
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.images, pytest.mark.batch_daemons, pytest.mark.slow, pytest.mark.timeout(2400)]

NOTEBOOK = "registry.example.org/analysis-facility/notebook:2026.9"
STACK = ("dask", "distributed", "coffea", "uproot", "awkward", "jupyterlab", "jupyterhub", "batchspawner")

# Run in the server's kernel: where it runs from, who it is, what it imports.
INSIDE = """
import getpass, importlib.metadata, json, os, pathlib, pwd, sys
marker = pathlib.Path("/.af-published.json")
print(json.dumps({
    "os_release": pathlib.Path("/etc/os-release").read_text(),
    "published": json.loads(marker.read_text()) if marker.exists() else None,
    "prefix": sys.prefix,
    "executable": sys.executable,
    "user": getpass.getuser(),
    "pwd": [pwd.getpwuid(os.getuid()).pw_name, pwd.getpwuid(os.getuid()).pw_dir],
    "uid": os.getuid(),
    "home": os.environ.get("HOME"),
    "tilde": os.path.expanduser("~"),
    "cwd": os.getcwd(),
    "versions": {n: importlib.metadata.version(n) for n in STACK},
}))
""".replace("STACK", repr(STACK))


@pytest.fixture(scope="module")
def hpc(published: Path, slurm: SlurmCluster, start_facility) -> RunningFacility:
    """Two backends on one Slurm: `hpc` runs servers from the host's environment, `hpc-image` from
    the published notebook image with bubblewrap."""
    raw = copy.deepcopy(embedded_raw())
    raw["data"]["cvmfs_root"] = str(published)
    host = slurm.backend_entry("hpc")
    image = copy.deepcopy(host)
    image.update(name="hpc-image", label="Test HPC, image (Slurm)", container_runtime="bubblewrap")
    del image["site"]["environment"]  # the image brings its own
    raw["backends"] += [host, image]
    raw["hub"]["start_timeout_seconds"] = 120
    return start_facility(raw)


def start_and_time(running: RunningFacility, slurm: SlurmCluster, user: str, backend: str) -> tuple[float, Any]:
    """Seconds from the spawn form's submission until the hub lists the server as ready."""
    session = running.login(user)
    started = time.monotonic()
    reply = session.post_spawn_form(spawn_form(backend, "cpu"))
    assert reply.status_code == 200, reply.text[-2000:]
    session.wait_ready(timeout=150)
    return time.monotonic() - started, session


def stop(session: Any, slurm: SlurmCluster, user: str) -> None:
    session.stop_server()
    deadline = time.monotonic() + 60
    while slurm.job_ids(f"jupyter-{user}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slurm.job_ids(f"jupyter-{user}") == [], f"{user}'s notebook job outlived its server"


def test_notebook_server_on_slurm_runs_from_the_published_image(hpc, slurm, published) -> None:
    tree = (published / "unpacked.cern.ch" / NOTEBOOK).resolve()
    seconds, alice = start_and_time(hpc, slurm, "alice", "hpc-image")
    try:
        job = slurm.job_ids("jupyter-alice")
        assert len(job) == 1, job
        server = alice.wait_ready()
        out = execute_in_kernel(f"{alice.url}{server['url']}", alice.token(), INSIDE)
    finally:
        stop(alice, slurm, "alice")
    report = json.loads(out.strip().splitlines()[-1])
    # The server's root file system is the published tree's, its Python the image's.
    assert report["os_release"] == (tree / "etc" / "os-release").read_text()
    assert "VERSION_CODENAME=bookworm" in report["os_release"]
    assert report["published"] == json.loads((tree / publish.MARKER).read_text())
    assert report["prefix"] == "/opt/af" and report["executable"].startswith("/opt/af/bin/python"), report
    # The packages are the lock's (the lock the image was built from).
    locked = read_lock(ROOT / "images" / "requirements.lock")
    assert report["versions"] == {name: locked[name] for name in STACK}
    # alice's own account, known inside by name, in her home (bound read-write).
    account = account_of("alice")
    assert report["uid"] == account.uid
    assert report["user"] == account.name and report["pwd"] == [account.name, str(account.home)]
    assert report["home"] == report["tilde"] == report["cwd"] == str(account.home)
    print(f"\nnotebook server from the image on Slurm: ready {seconds:.1f} s after the spawn form")


def test_start_up_from_the_image_against_the_host_environment(hpc, slurm, artifacts) -> None:
    """The same Slurm, the same user, alternately from the host's environment and from the image:
    seconds from the spawn form to a ready server (recorded, and the image is not far slower)."""
    times: dict[str, list[float]] = {"hpc": [], "hpc-image": []}
    for _ in range(3):
        for backend in times:
            seconds, session = start_and_time(hpc, slurm, "bob", backend)
            if backend == "hpc":  # the host's server is really the host's
                server = session.wait_ready()
                code = "import sys; print(sys.prefix)"
                prefix = execute_in_kernel(f"{session.url}{server['url']}", session.token(), code).strip()
                assert prefix != "/opt/af", prefix
            stop(session, slurm, "bob")
            times[backend].append(round(seconds, 2))
    host, image = statistics.median(times["hpc"]), statistics.median(times["hpc-image"])
    figures = {"seconds": times, "median_host": host, "median_image": image, "ratio": round(image / host, 2)}
    folder = artifacts / "image-jobs"
    folder.mkdir(exist_ok=True)
    (folder / "slurm-startup.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nSlurm notebook start-up, median of 3: host {host:.1f} s, image {image:.1f} s, ratio {image / host:.2f}")
    assert image < 3 * host + 10, figures
