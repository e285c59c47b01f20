"""The notebook and Dask-worker images built for real, published unpacked, and run with bubblewrap.

`make images` (images/build.py) builds images/Containerfile with buildah from a debootstrap base
and publishes each image as DUCC does; this module runs the same build (from its cache when
nothing changed, about 8.5 minutes cold here), then checks from outside (catalogue, the CVMFS resolver)
and from inside: a process started by backends.common.container.bubblewrap_argv reports its
root file system and the versions it imports, compared with images/requirements.lock.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import facility
from backends.common.container import bubblewrap_argv
from dask_backends.versions import read_lock
from facility.cvmfs import image_path, recipe_images, resolve
from images import build, publish
from tests.kube_helpers import ROOT, site_raw

# A cold build (no cache: debootstrap, both images, OCI layout, unpacking) took 507 s on an idle-ish
# 2-core machine; the first test's timeout covers the module fixture that runs it.
# `make test-images`, not `make test` (README): a cold build alone takes about 8.5 min.
pytestmark = [pytest.mark.images, pytest.mark.no_facility, pytest.mark.slow, pytest.mark.timeout(2400)]

LOCK = ROOT / "images" / "requirements.lock"
STACK = ("dask", "distributed", "coffea", "uproot", "awkward")
REFERENCES = {name: image["reference"] for name, image in yaml.safe_load(build.IMAGES_YAML.read_text()).items()}

# Run inside the image: what it sees of its root, its Python and its packages.
REPORT = """
import importlib.metadata, json, os, pathlib, sys
home = pathlib.Path(os.environ["HOME"])
(home / "written-inside").write_text("from the image")
data = pathlib.Path(sys.argv[1])
print(json.dumps({
    "os_release": pathlib.Path("/etc/os-release").read_text(),
    "published": json.loads(pathlib.Path("/.af-published.json").read_text()),
    "opt_af": os.path.isdir("/opt/af"),
    "executable": sys.executable,
    "prefix": sys.prefix,
    "python": sys.version.split()[0],
    "sees_unbound_folder": os.path.exists(sys.argv[2]),
    "data": (data / "events.txt").read_text(),
    "data_writable": os.access(data, os.W_OK),
    "versions": {n: importlib.metadata.version(n) for n in sys.argv[3:]},
    "bs4": __import__("bs4").__version__,
}))
"""


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    """`make images`' build and publication (cached when nothing changed): its catalogue and times."""
    cache = build.cache_dir()
    started = time.monotonic()
    assert build.main(["--cache", str(cache)]) == 0
    first = time.monotonic() - started
    started = time.monotonic()
    assert build.main(["--cache", str(cache)]) == 0
    again = time.monotonic() - started
    root = build.default_cvmfs_root(cache)  # root publishes where the facility's accounts can read
    entries = {e["reference"]: e for e in publish.read_catalogue(root)}
    return {"root": root, "entries": entries, "first": first, "again": again, "cache": cache}


def run_inside(tree: Path, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    argv = bubblewrap_argv(tree, command, **kwargs)
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_every_image_is_published_and_resolved(built):
    root, entries = built["root"], built["entries"]
    assert set(REFERENCES.values()) <= entries.keys()
    assert set(recipe_images(ROOT / "cvmfs" / "recipe.yaml")) <= entries.keys()
    lock_hash = __import__("hashlib").sha256(LOCK.read_bytes()).hexdigest()
    for reference in REFERENCES.values():
        entry = entries[reference]
        path = resolve(reference, root)  # facility/cvmfs.py, unchanged
        assert path == Path(entry["path"]) and path.resolve() == Path(entry["tree"])
        marker = json.loads((path / publish.MARKER).read_text())
        assert marker["image_id"] == entry["image_id"]
        assert entry["lock_sha256"] == lock_hash, f"{reference} was built from another lock"
        assert (path / "opt" / "af" / "bin" / "python").exists()
        assert entry["unpacked_bytes"] > 500e6 and 0 < entry["oci_bytes"] < entry["unpacked_bytes"]
    # The GPU notebook is the same build as the notebook: one tree.
    notebook, gpu = entries[REFERENCES["notebook"]], entries[REFERENCES["notebook-gpu"]]
    assert notebook["tree"] == gpu["tree"]
    assert notebook["tree"] != entries[REFERENCES["dask-worker"]]["tree"]
    # The facility's own helper finds the images of the example site under this root.
    raw = site_raw()
    raw["data"]["cvmfs_root"] = str(root)
    fac = facility.from_dict(raw)
    for image in fac.images:
        assert image_path(fac, image) == resolve(image.registry, root)


# Run inside the image as a facility account: who it is there, its home, its groups.
WHO = """
import getpass, grp, json, os, pathlib, pwd, sys
(pathlib.Path.home() / "written-inside").write_text(getpass.getuser())
entry = pwd.getpwuid(os.getuid())
print(json.dumps({
    "user": getpass.getuser(),
    "pwd": [entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir],
    "group": grp.getgrgid(os.getgid()).gr_name,
    "home": os.environ["HOME"],
    "tilde": os.path.expanduser("~"),
    "prefix": sys.prefix,
    "analyst": pwd.getpwnam("analyst").pw_uid,
}))
"""


def test_a_facility_account_runs_the_published_image_and_finds_itself_inside(built):
    """The published trees are readable by the per-user accounts that run jobs (root's home, where
    the build cache lies, is not), and inside the image the account finds its own passwd and group
    entries and its home, as under Apptainer: the argv a job runs (keep_env, bind_home), not root's."""
    from tests.batch_helpers import account_of

    account = account_of("imgrun")
    entry = built["entries"][REFERENCES["notebook"]]
    assert not Path(entry["tree"]).is_relative_to(Path.home()), "published under root's home"
    catalogue = publish.repository(built["root"]) / publish.CATALOGUE
    env = {**account.environment(), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    listed = subprocess.run([*account.setpriv_argv(), "cat", str(catalogue)], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    (account.home / "written-inside").unlink(missing_ok=True)
    argv = bubblewrap_argv(Path(entry["path"]), ["python", "-c", WHO], keep_env=True, bind_home=True)
    done = subprocess.run(
        [*account.setpriv_argv(), *argv], capture_output=True, text=True, env=env, cwd="/", timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    home = str(account.home)
    assert report["user"] == account.name
    assert report["pwd"] == [account.name, account.uid, account.gid, home]
    assert report["group"] == grp.getgrgid(account.gid).gr_name
    assert report["home"] == report["tilde"] == home and report["prefix"] == "/opt/af"
    assert report["analyst"] == 1000, "the image's own accounts are kept"
    assert (account.home / "written-inside").read_text() == account.name  # the home was bound read-write
    assert (account.home / "written-inside").stat().st_uid == account.uid


def test_second_build_with_nothing_changed_is_quick(built):
    assert built["again"] < 60, f"a build with nothing changed took {built['again']:.0f} s"
    print(f"\nmake images: first run {built['first']:.0f} s in this test, second {built['again']:.1f} s")


def test_a_process_runs_inside_the_notebook_image(built, tmp_path):
    tree = Path(built["entries"][REFERENCES["notebook"]]["tree"])
    # A home outside /tmp, under a folder the image has (/root): bwrap mounts over it (underlay).
    home = built["cache"] / "test-home"
    home.mkdir(exist_ok=True)
    (home / "written-inside").unlink(missing_ok=True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.txt").write_text("40 events\n")
    # A host folder nothing binds (the repository may lie below the bound /tmp, as a CI clone does).
    unbound = built["cache"] / "not-bound"
    unbound.mkdir(exist_ok=True)
    command = ["python", "-c", REPORT, str(data), str(unbound), *STACK]
    done = run_inside(tree, command, home=home, ro_binds=[data], env={"LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Its root file system is the image's.
    assert report["os_release"] == (tree / "etc" / "os-release").read_text()
    assert "VERSION_CODENAME=bookworm" in report["os_release"]
    assert report["published"] == json.loads((tree / publish.MARKER).read_text())
    assert report["opt_af"] and report["prefix"] == "/opt/af" and report["executable"] == "/opt/af/bin/python"
    assert not report["sees_unbound_folder"], "a host folder that is not bound must not be seen"
    # The data was bound read-only, the home read-write.
    assert report["data"] == "40 events\n" and not report["data_writable"]
    assert (home / "written-inside").read_text() == "from the image"
    # The analysis stack is the lock's.
    locked = read_lock(LOCK)
    assert report["versions"] == {name: locked[name] for name in STACK}
    assert report["bs4"] == locked["beautifulsoup4"]


def test_worker_image_has_the_same_stack_and_its_dask_command(built):
    tree = Path(built["entries"][REFERENCES["dask-worker"]]["tree"])
    script = "import importlib.metadata as m, sys; print(' '.join(m.version(n) for n in sys.argv[1:]))"
    done = run_inside(tree, ["python", "-c", script, *STACK])
    assert done.returncode == 0, done.stderr
    locked = read_lock(LOCK)
    assert done.stdout.split() == [locked[name] for name in STACK]
    # The image's ENV (PATH=/opt/af/bin:...) reaches the process: `dask` is the image's.
    done = run_inside(tree, ["sh", "-c", "command -v dask; dask worker --help | head -n 1"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "/opt/af/bin/dask"
    assert done.stdout.splitlines()[1].startswith("Usage: dask worker")


def test_import_coffea_inside_and_on_the_host(built):
    """Start-up time of coffea (its processor and NanoEvents; `import coffea` alone is lazy) from
    the image with bubblewrap and from the host's environment, printed for the record."""
    tree = Path(built["entries"][REFERENCES["notebook"]]["tree"])
    code = "import coffea, coffea.processor, coffea.nanoevents; print(coffea.__file__)"
    inside, host = [], []
    for _ in range(3):
        started = time.monotonic()
        done = run_inside(tree, ["python", "-c", code])
        inside.append(time.monotonic() - started)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("/opt/af/lib/python3.11/site-packages/coffea/")
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": ""}
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
        host.append(time.monotonic() - started)
    print(f"\nimport coffea.processor: image (bwrap) best {min(inside):.2f} s, host best {min(host):.2f} s")
    assert min(inside) < 30


def test_bubblewrap_argv_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an unpacked image"):
        bubblewrap_argv(tmp_path, ["true"])
    (tmp_path / "usr").mkdir()
    with pytest.raises(ValueError, match="give an absolute path"):
        bubblewrap_argv(tmp_path, ["true"], binds=["relative/data"])


def test_a_moved_reference_keeps_the_tree_before_and_prunes_older(tmp_path):
    """publish.link and publish.prune without a build: trees named by image id, as publish() makes them."""
    reference = REFERENCES["dask-worker"]
    trees = [publish.flat_tree(tmp_path, image_id) for image_id in ("aa01", "bb02", "cc03")]
    for tree in trees:
        (tree / "usr").mkdir(parents=True)
    entries: dict[str, dict[str, Any]] = {}
    for tree in trees:
        path, before = publish.link(tmp_path, reference, tree)
        assert resolve(reference, tmp_path) == path and path.resolve() == tree.resolve()
        entries[reference] = {"reference": reference, "tree": str(tree), "previous_tree": before}
        publish.write_catalogue(tmp_path, list(entries.values()))
    assert before == str(trees[1].resolve())
    assert publish.prune(tmp_path) == [trees[0]]
    assert not trees[0].parent.exists() and trees[1].is_dir() and trees[2].is_dir()


# Run inside the notebook image: a client of the cluster, what its workers and scheduler run from,
# and the facility's version-skew check against the image's own lock.
CLIENT = """
import json, sys
from distributed import Client
from dask_backends.versions import VersionSkewError, check_cluster, read_lock
with Client(sys.argv[1], timeout=60) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=120)
    prefix = lambda: __import__("sys").prefix
    out = {
        "sum": client.submit(sum, range(10)).result(),
        "client": sys.prefix,
        "workers": sorted(client.run(prefix).values()),
        "scheduler": client.run_on_scheduler(prefix),
    }
    try:
        check_cluster(client, lock=read_lock("/opt/af/requirements.lock"))
        out["skew"] = []
    except VersionSkewError as error:
        out["skew"] = error.differences
print(json.dumps(out))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_dask_cluster_from_the_images_passes_the_skew_check_and_a_foreign_worker_fails_it(built, tmp_path):
    """Scheduler and worker from the dask-worker image, the client in the notebook image: one stack,
    no skew. A worker from another environment (the host's, with awkward planted at 2.13.0 as a
    worker of an older build would report it) joins: the check run in the notebook image names it."""
    worker_tree = Path(built["entries"][REFERENCES["dask-worker"]]["tree"])
    notebook_tree = Path(built["entries"][REFERENCES["notebook"]]["tree"])
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler_argv = ["dask", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
    worker_argv = ["dask", "worker", address, "--nthreads", "1", "--no-dashboard", "--name", "image-worker"]
    processes = [subprocess.Popen(bubblewrap_argv(worker_tree, scheduler_argv), **quiet)]
    try:
        processes.append(subprocess.Popen(bubblewrap_argv(worker_tree, worker_argv), **quiet))
        done = run_inside(notebook_tree, ["python", "-c", CLIENT, address, "1"], home=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        assert report["sum"] == 45
        assert report["client"] == report["scheduler"] == "/opt/af" and report["workers"] == ["/opt/af"]
        assert report["skew"] == []
        planted = tmp_path / "site"
        (planted / "awkward-2.13.0.dist-info").mkdir(parents=True)
        (planted / "awkward-2.13.0.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: awkward\nVersion: 2.13.0\n"
        )
        foreign = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"]
        foreign += ["--no-dashboard", "--no-nanny", "--name", "foreign"]
        processes.append(subprocess.Popen(foreign, env={**os.environ, "PYTHONPATH": str(planted)}, **quiet))
        done = run_inside(notebook_tree, ["python", "-c", CLIENT, address, "2"], home=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        assert report["workers"] == sorted(["/opt/af", sys.prefix])
        awkward = read_lock(LOCK)["awkward"]
        skew = [line for line in report["skew"] if line.startswith("awkward:")]
        assert skew and "2.13.0" in skew[0] and awkward in skew[0], report["skew"]
        assert not any(line.startswith(("dask:", "distributed:")) for line in report["skew"])
    finally:
        for process in reversed(processes):
            stop(process)


def test_a_batch_backend_with_bubblewrap_wraps_its_job_command_in_the_image(built, tmp_path):
    """container_runtime: bubblewrap through the batch kinds' job_wrapping (what Slurm and HTCondor
    jobs run), for a real process: the image's Python, the job's environment kept, the site's binds."""
    import dataclasses

    from backends.common.container import job_wrapping, uses_container
    from backends.slurm.settings import SlurmSettings

    raw = site_raw()
    raw["data"]["cvmfs_root"] = str(built["root"])
    fac = facility.from_dict(raw)
    data = tmp_path / "scratch"
    data.mkdir()
    backend = dataclasses.replace(
        fac.backend("hpc"), container_runtime="bubblewrap", site={"apptainer_binds": [str(data)]}
    )
    assert uses_container(backend)
    image = fac.image("coffea-2026")
    wrapping = job_wrapping(fac, backend, image, SlurmSettings.of(backend))
    code = "import os, sys; open(sys.argv[1] + '/out', 'w').write(sys.prefix + ' ' + os.environ['AF_JOB'])"
    argv = wrapping.apply(["python", "-c", code, str(data)])
    assert "bwrap" in argv and str(image_path(fac, image).resolve()) in argv
    subprocess.run(argv, check=True, timeout=120, env={**os.environ, "AF_JOB": "job-7"})
    assert (data / "out").read_text() == "/opt/af job-7"
    with pytest.raises(ValueError, match="cannot bind GPUs"):
        job_wrapping(fac, backend, image, SlurmSettings.of(backend), gpus=1)
