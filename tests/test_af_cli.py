"""`af up / status / down` on real processes: supervision, no second copy, clear errors, nothing left behind."""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path

import psutil
import pytest

from af.data import CATALOGUE_PATH
from af.runtime import StateDir
from af.supervise import instance_processes, port_open, supervisord_pid
from facility import runs
from facility.quota import RUN, Holding
from tests.batch_helpers import until, write_notebook
from tests.harness import embedded_raw, free_port_block, run_af, write_facility
from tests.test_quota import UNTIL_GO, WAIT_FOR, af_run_as
from tests.usage_helpers import recorded

pytestmark = pytest.mark.side_facility

CATALOGUE = CATALOGUE_PATH.lstrip("/")


def _ports(runtime: dict) -> list[int]:
    return [
        *runtime["ports"].values(),
        *(p for gw in runtime["gateways"].values() for p in (gw["port"], gw["api_port"])),
    ]


def test_lifecycle_status_second_up_and_clean_down(start_facility) -> None:
    running = start_facility(embedded_raw())
    state = StateDir(running.state_dir)
    status = running.af("status")
    for component in ("proxy", "hub", "gateway-local"):
        assert any(
            line.split("│")[1].strip() == component and " up " in line
            for line in status.stdout.splitlines()
            if "│" in line
        ), status.stdout
    assert "logs/hub.log" in status.stdout
    # The facility's own data lake was empty: `af up` gave it the default samples for the example notebook.
    catalogue = json.loads((Path(running.runtime["data"]["origin"]["local_root"]) / CATALOGUE).read_text())
    assert {name: entry["events"] for name, entry in catalogue["samples"].items()} == {"ttbar": 50_000, "wjets": 50_000}

    first_pid = supervisord_pid(state)
    again = running.af("up", "--facility", str(running.facility_file))
    assert "already running; not starting a second copy" in again.stdout
    assert supervisord_pid(state) == first_pid
    hubs = [p for p in instance_processes(state) if "jupyterhub_config.py" in " ".join(p.cmdline())]
    assert len(hubs) == 1

    # A notebook server and a Dask cluster: started by the hub and gateway, not by supervisord.
    judy = running.login("judy")
    assert judy.api("POST", "/users/judy/server", json={"user_options": {}}).status_code in (201, 202)
    judy.wait_ready()
    assert any("af-singleuser" in " ".join(p.cmdline()) for p in instance_processes(state))

    down = running.af("down")
    assert "Stopped the facility" in down.stdout
    assert instance_processes(state) == []
    assert not any(port_open(port, 0.3) for port in _ports(running.runtime))
    after = running.af("status", check=False)
    assert after.returncode == 1 and " down " in after.stdout
    assert "Nothing was running" in running.af("down").stdout


def test_taken_port_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port_block()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port + 1))  # the hub API port
    blocker.listen()
    try:
        facility_file = write_facility(tmp_path / "facility.yaml", embedded_raw())
        result = run_af(tmp_path / "state", "up", "--facility", str(facility_file), "--port", str(port), check=False)
    finally:
        blocker.close()
    assert result.returncode == 1
    assert f"port {port + 1} for hub is taken by pid {psutil.Process().pid}" in " ".join(result.stderr.split())
    assert supervisord_pid(StateDir(tmp_path / "state")) is None


def test_bad_facility_file_stops_af_up_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "facility.yaml"
    bad.write_text(
        "name: demo\nimages: []\nbackends:\n"
        "  - {name: a, kind: pbs, label: A, resources: {cores: {max: 1}, memory_gb: {max: 1}}}\n"
    )
    result = run_af(tmp_path / "state", "up", "--facility", str(bad), check=False)
    assert result.returncode == 2
    assert "backends[0].kind: 'pbs' is not allowed; allowed: local, kubernetes, slurm, htcondor" in result.stderr
    assert not (tmp_path / "state" / "runtime.json").exists()


def _one_clear_line(result, *words: str) -> str:
    """A refusal: exit 2, no traceback, the message naming what was wrong."""
    text = " ".join(result.stderr.split())
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for word in words:
        assert word in text, (word, text)
    return text


def test_out_of_range_ports_are_refused_before_anything_starts(tmp_path: Path) -> None:
    raw = embedded_raw()
    raw["hub"]["bind_url"] = "http://127.0.0.1:70000"
    facility_file = write_facility(tmp_path / "facility.yaml", raw)
    result = run_af(tmp_path / "state", "up", "--facility", str(facility_file), "--port", "8000", check=False)
    _one_clear_line(result, "hub.bind_url", "70000", "ports are 1 to 65535")
    assert run_af(tmp_path / "state", "check-facility", str(facility_file), check=False).returncode == 2
    good = write_facility(tmp_path / "good.yaml", embedded_raw())
    _one_clear_line(run_af(tmp_path / "state", "up", "--facility", str(good), "--port", "70000", check=False), "70000")
    # The gateways and services take ports above the public one: 65530 leaves them none.
    result = run_af(tmp_path / "state", "up", "--facility", str(good), "--port", "65530", check=False)
    _one_clear_line(result, "needs ports 65530 to")
    assert not (tmp_path / "state" / "supervisord.pid").exists()


PARAMETERS_CELL = "n_files = 1\nlabel = 'all'\nscale: float = 1.0\nflag = True\n"


def _notebook(path: Path) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(PARAMETERS_CELL)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, nbformat.v4.new_code_cell("print('RESULT', n_files * scale, repr(label), flag)")]
    nbformat.write(notebook, path)
    return path


def test_af_run_checks_values_against_the_parameters_cell_before_a_kernel(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "p.ipynb")
    cases = [
        (["-p", "n_files", "abc"], ["n_files", "int"]),
        (["-p", "n_files", "true"], ["n_files", "int"]),
        (["-p", "scale", "fast"], ["scale", "float"]),
        (["-p", "flag", "3"], ["flag", "bool"]),
        (["--cell-timeout", "0"], ["--cell-timeout"]),
        (["--cell-timeout", "abc"], ["--cell-timeout"]),
        (["--cell-timeout", "99999999999999999999"], ["--cell-timeout"]),
    ]
    for args, words in cases:
        run_dir = tmp_path / f"run-{len(args)}-{args[-1]}"
        result = run_af(tmp_path / "state", "run", str(notebook), "--run-dir", str(run_dir), *args, check=False)
        _one_clear_line(result, *words)
        assert not run_dir.exists(), args  # refused before any kernel or folder
    # Good values run; a declared string takes the text as given, an int is fine for a float.
    run_dir = tmp_path / "good"
    args = ["-p", "n_files", "2", "-p", "scale", "3", "-p", "label", "5", "--cell-timeout", "60"]
    result = run_af(tmp_path / "state", "run", str(notebook), "--run-dir", str(run_dir), *args, check=False)
    assert result.returncode == 0, result.stderr
    assert "RESULT 6 '5' True" in (run_dir / "p.ipynb").read_text()


def test_a_run_on_a_facility_without_quotas_is_counted_in_usage(start_facility, tmp_path: Path) -> None:
    """Usage accounting counts a run of `af run` on the facility's host whether or not facility.yaml
    sets quotas, as it counts servers and clusters (and as the hub counts a notebook server's runs)."""
    raw = copy.deepcopy(embedded_raw())
    raw["usage"] = {"sample_interval_seconds": 1}
    assert "quotas" not in raw
    running = start_facility(raw)
    go = tmp_path / "go"
    notebook = write_notebook(tmp_path / "wait.ipynb", WAIT_FOR, UNTIL_GO, "print('done')")
    run = af_run_as(running, "carol", notebook, tmp_path / "unlimited", "-p", "go", str(go), wait=False)
    folder = runs.runs_dir(running.state_dir)
    try:
        until(lambda: runs.running(folder, "carol") or run.poll() is not None, "the run's record", timeout=60)
        assert run.poll() is None, run.communicate()
        assert runs.running(folder, "carol") == [Holding(RUN, "local", "unlimited", cores=1, memory_gb=2)]
        started = time.monotonic()
        until(lambda: recorded(running, "carol")[1].get(RUN, (0.0,))[0] > 0, "the run's core-seconds", timeout=30)
        core_seconds = recorded(running, "carol")[1][RUN][0]
        assert core_seconds <= 1 * (time.monotonic() - started + 2), core_seconds  # 1 core, since it began
    finally:
        go.touch()
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert runs.running(folder, "carol") == []
