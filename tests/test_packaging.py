"""The wheel ships every file the code opens: built from the repository's files, installed into an
empty venv (no source tree on the path), it checks a facility.yaml and renders batch scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = [pytest.mark.no_facility, pytest.mark.slow]


def _repository_files() -> list[str]:
    """The files git would commit (tracked, or new and not ignored): no build or test leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in _repository_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)], check=True)
    (wheel,) = (work / "dist").glob("analysis_facility-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The wheel alone, its dependencies seen from the development venv: a path line in a .pth adds
    # that folder without running its .pth files, so the editable install of the source tree stays
    # out and every module of the project must come from the wheel. (Installing the dependencies
    # again took a minute of every test run.)
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "zz_development_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, timeout=300)
    return venv


def _run_outside_the_source(venv: Path, *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_installed_wheel_checks_a_facility_file(wheel_venv: Path, tmp_path: Path) -> None:
    embedded = ROOT / "facility" / "embedded.yaml"
    result = _run_outside_the_source(wheel_venv, wheel_venv / "bin" / "af", "check-facility", embedded, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(embedded.read_text().replace("backends:", "backendz:", 1))
    result = _run_outside_the_source(wheel_venv, wheel_venv / "bin" / "af", "check-facility", broken, cwd=tmp_path)
    assert result.returncode != 0 and "backendz" in result.stdout + result.stderr


def test_installed_wheel_renders_batch_scripts(wheel_venv: Path, tmp_path: Path) -> None:
    """The notebook job templates of the batch kinds come from the installed package, not the source tree."""
    program = textwrap.dedent(
        """
        import sys, backends, backends.slurm.scripts as slurm, backends.htcondor.submit as condor
        assert backends.__file__.startswith(sys.prefix), backends.__file__  # the wheel, not the source tree
        print(slurm.render_notebook_script({
            "job_name": "jupyter-alice", "log_file": "/jobs/slurm-%j.log", "workdir": "/jobs", "nprocs": "2",
            "memory": "4G", "runtime": "01:00:00", "partition": "cpu", "account": "", "gres": "",
            "site_options": [], "command": "jupyterhub-singleuser",
        }))
        print(condor.render_notebook_submit({
            "executable": "/env/bin/batchspawner-singleuser", "arguments": "", "getenv": "PATH",
            "job_dir": "/jobs", "cores": 2, "memory_mb": 4096, "gpus": 0, "accounting_group": "",
            "username": "alice", "username_ad": '"alice"', "requirements": "", "walltime_seconds": 3600,
        }))
        """
    )
    result = _run_outside_the_source(wheel_venv, wheel_venv / "bin" / "python", "-c", program, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "#SBATCH --cpus-per-task=2" in result.stdout and "exec jupyterhub-singleuser" in result.stdout
    assert "request_cpus = 2" in result.stdout and "queue" in result.stdout.splitlines()
