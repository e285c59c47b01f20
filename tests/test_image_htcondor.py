"""A Dask cluster on the real HTCondor pool runs from the published dask-worker image (issue 24).

The pool runs in the Debian 13 chroot (tests/htcondor_pool.py), with the published CVMFS-like root
bound in at its own path and bubblewrap installed there (scripts/test-install.d/30-htcondor.sh).
An htcondor backend with `container_runtime: bubblewrap` runs carol's scheduler and workers from
the dask-worker image, as her own account. Checked from inside, by a client that itself runs in the
notebook image (as a notebook would): the workers' and the scheduler's root file system, Python,
account and home, and the facility's version check against the lock passes. A client on the host
(another Python) fails that check, so the check is not vacuous. Beside it, a backend on the same pool
runs clusters from the host's environment, and both clusters' start-up is timed.
"""

from __future__ import annotations

import copy
import json
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_gateway import GatewayClusterError, JupyterHubAuth

from backends.common.container import bubblewrap_argv
from dask_backends.safe_gateway import SafeGateway as Gateway
from dask_backends.versions import VersionSkewError, check_cluster
from images import publish
from tests.batch_helpers import account_of, until
from tests.conftest import started_pool
from tests.harness import RunningFacility, embedded_raw
from tests.htcondor_pool import HTCondorPool

pytestmark = [pytest.mark.images, pytest.mark.batch_daemons, pytest.mark.slow, pytest.mark.timeout(2400)]

NOTEBOOK = "registry.example.org/analysis-facility/notebook:2026.9"
WORKER = "registry.example.org/analysis-facility/dask-worker:2026.9"

# Run in the notebook image: connect to carol's cluster as a notebook does, ask the scheduler and
# the workers where they run, and run the facility's version check against the image's lock.
CLIENT = """
import json, sys
from dask_gateway import JupyterHubAuth
from dask_backends.safe_gateway import SafeGateway as Gateway
from dask_backends.versions import VersionSkewError, check_cluster, read_lock

def where():
    import getpass, os, pathlib, sys
    return {
        "prefix": sys.prefix,
        "os_release": pathlib.Path("/etc/os-release").read_text(),
        "published": pathlib.Path("/.af-published.json").read_text(),
        "user": getpass.getuser(),
        "uid": os.getuid(),
        "home": os.environ.get("HOME"),
        "tilde": os.path.expanduser("~"),
    }

url, token, name, workers = sys.argv[1:5]
gateway = Gateway(url, auth=JupyterHubAuth(api_token=token))
cluster = gateway.connect(name)
with cluster.get_client() as client:
    client.wait_for_workers(int(workers), timeout=180)
    out = {
        "client": sys.prefix,
        "sum": client.submit(sum, range(101)).result(),
        "workers": list(client.run(where).values()),
        "scheduler": client.run_on_scheduler(where),
    }
    try:
        check_cluster(client, lock=read_lock("/opt/af/requirements.lock"))
        out["skew"] = []
    except VersionSkewError as error:
        out["skew"] = error.differences
cluster.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def image_pool(published: Path) -> Iterator[HTCondorPool]:
    """The test pool with the published root bound into its chroot (where the nodes mount CVMFS)."""
    pool = HTCondorPool(binds=(published,))
    no_bwrap = None
    if not (pool.chroot / "usr" / "bin" / "bwrap").exists():
        no_bwrap = f"no bubblewrap in {pool.chroot}: run scripts/test-install.d/30-htcondor.sh"
    yield from started_pool(pool, no_bwrap)


@pytest.fixture(scope="module")
def grid(image_pool: HTCondorPool, published: Path, start_facility) -> RunningFacility:
    """`grid-image` runs Dask from the published images with bubblewrap, `grid` from the host's
    environment, both on the same pool."""
    raw = copy.deepcopy(embedded_raw())
    raw["data"]["cvmfs_root"] = str(published)
    raw["images"].append({"name": "dask-2026", "label": "Dask worker image", "registry": WORKER})
    host = image_pool.backend_entry("grid")
    image = copy.deepcopy(host)
    image.update(name="grid-image", label="Test grid site, images (HTCondor)", container_runtime="bubblewrap")
    del image["site"]["environment"]  # the image brings its own
    raw["backends"] += [host, image]
    return start_facility(raw)


def print_logs(running: RunningFacility, pool: HTCondorPool) -> None:
    for log in [*(running.state_dir / "logs").glob("gateway-grid*"), *pool.job_dir.rglob("*.log")]:
        print(f"===== {log}\n{log.read_text(errors='replace')[-4000:]}")


def start_cluster(
    gateway: Gateway, image: str, running: RunningFacility, pool: HTCondorPool, workers: int = 2
) -> tuple[object, float]:
    """A cluster with `workers` workers connected; seconds from asking to all workers connected."""
    started = time.monotonic()
    try:
        cluster = gateway.new_cluster(image=image, worker_cores=1, worker_memory_gb=1)
    except GatewayClusterError:
        print_logs(running, pool)  # why the jobs failed is in the gateway's and the jobs' logs
        raise
    cluster.scale(workers)
    with cluster.get_client() as client:
        client.wait_for_workers(workers, timeout=240)
    return cluster, time.monotonic() - started


def test_dask_cluster_on_htcondor_runs_from_the_worker_image_and_passes_the_version_check(
    grid, image_pool, published
) -> None:
    tree = (published / "unpacked.cern.ch" / WORKER).resolve()
    notebook_tree = (published / "unpacked.cern.ch" / NOTEBOOK).resolve()
    token = grid.login("carol").token()
    url = grid.runtime["gateways"]["grid-image"]["url"]
    with Gateway(url, auth=JupyterHubAuth(api_token=token)) as gateway:
        cluster, seconds = start_cluster(gateway, "dask-2026", grid, image_pool)
        try:
            assert len(image_pool.job_ids()) == 3, image_pool.job_ids()  # scheduler and two workers
            with cluster.get_client() as client:
                # The host's Python is another build than the image's: the check run here must see it.
                if platform.python_version() != "3.11.2":
                    with pytest.raises(VersionSkewError, match="python"):
                        check_cluster(client)
            argv = bubblewrap_argv(notebook_tree, ["python", "-c", CLIENT, url, token, cluster.name, "2"])
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            cluster.shutdown()
    until(lambda: image_pool.job_ids() == [], "carol's cluster jobs to end", timeout=60)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["sum"] == 5050 and report["client"] == "/opt/af"
    assert report["skew"] == [], report["skew"]
    account = account_of("carol")
    marker = (tree / publish.MARKER).read_text()
    for part in [report["scheduler"], *report["workers"]]:
        assert part["prefix"] == "/opt/af"
        assert part["os_release"] == (tree / "etc" / "os-release").read_text()
        assert part["published"] == marker, "not the dask-worker image's tree"
        assert part["uid"] == account.uid and part["user"] == account.name
        assert part["home"] == part["tilde"] and part["home"].startswith(str(image_pool.job_dir))
    assert len(report["workers"]) == 2
    print(f"\nDask cluster from the image on HTCondor: 2 workers connected {seconds:.1f} s after asking")


def test_cluster_start_up_from_the_image_against_the_host_environment(grid, image_pool, artifacts) -> None:
    """One cluster of two workers from each backend, alternately, twice: seconds until connected."""
    token = grid.login("dave").token()
    times: dict[str, list[float]] = {"grid": [], "grid-image": []}
    for _ in range(2):
        for backend in times:
            image = "dask-2026" if backend == "grid-image" else "coffea-2026"
            url = grid.runtime["gateways"][backend]["url"]
            with Gateway(url, auth=JupyterHubAuth(api_token=token)) as gateway:
                cluster, seconds = start_cluster(gateway, image, grid, image_pool)
                cluster.shutdown()
            until(lambda: image_pool.job_ids() == [], "dave's cluster jobs to end", timeout=60)
            times[backend].append(round(seconds, 2))
    host, image = min(times["grid"]), min(times["grid-image"])
    figures = {"seconds": times, "best_host": host, "best_image": image, "ratio": round(image / host, 2)}
    folder = artifacts / "image-jobs"
    folder.mkdir(exist_ok=True)
    (folder / "htcondor-cluster-startup.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nHTCondor cluster (2 workers) start-up, best of 2: host {host:.1f} s, image {image:.1f} s")
    assert image < 3 * host + 20, figures
