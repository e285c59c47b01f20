"""The data lake through XCache: real XRootD origin and cache started by `af up`, generated NanoAOD
files, the ttbar processor through the cache versus local files, fallback, clear errors, `af run`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import nbformat
import numpy as np
import pytest

from af import supervise
from af.data import COFFEA_VERSION
from af.runtime import StateDir
from dask_backends.data import DataFileNotFound, DataLake, DataLakeError, UnknownDataset
from tests.harness import AF, ROOT, RunningFacility, execute_in_kernel

EVENTS = 3000  # per sample, in two files


@pytest.fixture(scope="module")
def lake(embedded: RunningFacility) -> dict[str, Any]:
    """Small generated ttbar and W+jets samples in the embedded facility's data lake."""
    embedded.af("data", "generate", "--events", str(EVENTS), "--files", "2", "--seed", "7")
    data = embedded.runtime["data"]
    return {
        "origin_root": Path(data["origin"]["local_root"]),
        "cache_root": Path(data["caches"]["local-xcache"]["local_root"]),
        "client": DataLake(origin=data["origin"]["url"], cache=data["caches"]["local-xcache"]["url"]),
    }


def test_data_servers_follow_the_port_block(embedded: RunningFacility) -> None:
    runtime = embedded.runtime
    public = runtime["ports"]["public"]
    assert runtime["data"]["origin"]["url"] == f"root://127.0.0.1:{public + 3}"
    assert runtime["data"]["caches"]["local-xcache"]["url"] == f"root://127.0.0.1:{public + 4}"
    assert runtime["data"]["origin"]["local_root"] == str(embedded.state_dir.resolve() / "data-lake")
    status = embedded.af("status")
    assert "xrootd-origin" in status.stdout and "xcache-local-xcache" in status.stdout
    cache_config = (embedded.state_dir / "xrootd" / "xcache-local-xcache.cfg").read_text()
    assert f"pss.origin 127.0.0.1:{public + 3}" in cache_config


def test_generated_files_pass_nanoaod_schema(lake: dict[str, Any]) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    catalogue = json.loads((lake["origin_root"] / "store/af/catalogue.json").read_text())
    assert set(catalogue["samples"]) >= {"ttbar", "wjets"}
    entry = catalogue["samples"]["ttbar"]["files"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NanoAODSchema warns about collections a file does not have
        events = NanoEventsFactory.from_root(
            {str(lake["origin_root"] / entry["path"].lstrip("/")): "Events"}, schemaclass=NanoAODSchema
        ).events()
    assert len(events) == entry["events"]
    assert {"Jet", "Muon", "Electron", "MET", "genWeight"} <= set(events.fields)
    assert {"pt", "eta", "phi", "mass", "btagDeepFlavB"} <= set(events.Jet.fields)
    # A semileptonic ttbar sample: on average several jets, about two b tags, one lepton per event.
    assert 3.5 < ak.mean(ak.num(events.Jet)) < 7
    assert 1.5 < ak.mean(ak.sum(events.Jet.btagDeepFlavB > 0.2783, axis=1)) < 2.5
    assert 0.9 < ak.mean(ak.num(events.Muon) + ak.num(events.Electron)) <= 1.0
    assert ak.mean(events.MET.pt) > 20


def _second_files(fileset: dict[str, Any]) -> dict[str, Any]:
    """Keep each sample's second file only (the notebook test reads the first ones, cold)."""
    return {s: {**e, "files": dict(list(e["files"].items())[1:2])} for s, e in fileset.items()}


def test_histograms_through_cache_equal_local(lake: dict[str, Any]) -> None:
    from analyses import ttbar

    client: DataLake = lake["client"]
    through_cache = _second_files(client.fileset(["ttbar", "wjets"]))
    assert all(url.startswith(client.cache) for e in through_cache.values() for url in e["files"])
    local = {
        s: {**e, "files": {str(lake["origin_root"]) + client.path_of(u): t for u, t in e["files"].items()}}
        for s, e in through_cache.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_local = ttbar.run(local)
        out_cache = ttbar.run(through_cache)
    assert out_local["events"] == out_cache["events"] == EVENTS
    assert out_local["hist"].sum().value > 0
    assert np.array_equal(out_local["hist"].values(flow=True), out_cache["hist"].values(flow=True))
    assert np.array_equal(out_local["hist"].variances(flow=True), out_cache["hist"].variances(flow=True))
    assert (lake["cache_root"] / "store/af/generated/ttbar/ttbar_001.root").exists()


def test_missing_file_and_unknown_dataset_are_clear_errors(lake: dict[str, Any]) -> None:
    client: DataLake = lake["client"]
    with pytest.raises(DataFileNotFound, match=r"no file /store/af/nothing\.root in the data lake"):
        client.open("/store/af/nothing.root")
    with pytest.raises(UnknownDataset, match=r"no dataset named 'zprime'.*known datasets: .*ttbar"):
        client.fileset(["zprime"])
    with pytest.raises(DataLakeError, match="outside the data lake's prefixes"):
        client.url("/etc/passwd")
    with pytest.raises(DataLakeError, match="not in this facility's data lake"):
        client.url("root://elsewhere.example.org:1094//store/x.root")


def _af_data(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AF, "data", *args], cwd=ROOT, env={**os.environ, "COLUMNS": "200", **env}, capture_output=True, text=True
    )


def test_import_samples_offline_is_a_clear_error(tmp_path: Path) -> None:
    # An empty download cache and an index nobody answers: pip really fails, as it would offline.
    offline = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    offline |= {"PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_FIND_LINKS": "", "PIP_NO_INDEX": ""}
    result = _af_data("import-samples", "--lake", str(tmp_path / "lake"), env=offline)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"could not download coffea {COFFEA_VERSION}'s source distribution from PyPI" in message
    assert "Offline?" in message and "--sdist PATH" in message
    missing = _af_data("import-samples", "--sdist", str(tmp_path / "nope.tar.gz"), "--lake", str(tmp_path), env={})
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_imported_cms_samples_are_real_nanoaod(tmp_path: Path) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    sdist = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "analysis-facility"
    if not (sdist / f"coffea-{COFFEA_VERSION}.tar.gz").is_file():
        pytest.skip("coffea's sdist is not downloaded; scripts/test-install.d/45-coffea-samples.sh fetches it")
    result = _af_data("import-samples", "--lake", str(tmp_path), env={})
    assert result.returncode == 0, result.stderr
    catalogue = json.loads((tmp_path / "store/af/catalogue.json").read_text())
    entry = catalogue["samples"]["cms_dy"]
    assert entry["kind"] == "cms-nanoaod" and entry["events"] == 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root(
            {str(tmp_path / entry["files"][0]["path"].lstrip("/")): "Events"}, schemaclass=NanoAODSchema
        ).events()
    assert len(events) == 40 and ak.sum(ak.num(events.Muon)) > 0


def _notebook(path: Path, *sources: str) -> Path:
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_af_run_failing_cell_exits_nonzero_and_keeps_partial_output(embedded: RunningFacility, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "fails.ipynb", "x = 1", "print('x is', x)", "1 / 0", "print('never')")
    run_dir = tmp_path / "run"
    result = embedded.af("run", str(notebook), "-p", "x", "3", "--run-dir", str(run_dir), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "fails.ipynb: cell 4 failed: ZeroDivisionError" in message  # cell 2 is papermill's injected one
    assert "partial output notebook" in message
    executed = nbformat.read(run_dir / "fails.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "x is 3" in printed and "never" not in printed
    assert "ZeroDivisionError" in (run_dir / "run.log").read_text()


def test_af_run_refuses_unknown_parameters_and_backends(embedded: RunningFacility, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "ok.ipynb", "x = 1", "print(x)")
    typo = embedded.af("run", str(notebook), "-p", "y", "2", "--run-dir", str(tmp_path / "a"), check=False)
    assert typo.returncode == 2 and "has no parameter y; its parameters: x" in " ".join(typo.stderr.split())
    unknown = embedded.af("run", str(notebook), "--backend", "mars", "--run-dir", str(tmp_path / "b"), check=False)
    assert unknown.returncode == 2 and "no backend named 'mars'" in unknown.stderr
    bad_name = embedded.af("run", str(notebook), "-p", "1x", "2", check=False)
    assert bad_name.returncode == 2 and "not a valid parameter name" in bad_name.stderr


def test_af_run_ttbar_notebook_reads_through_the_cache(
    embedded: RunningFacility, lake: dict[str, Any], tmp_path: Path
) -> None:
    cached = [lake["cache_root"] / f"store/af/generated/{s}/{s}_000.root" for s in ("ttbar", "wjets")]
    assert not any(path.exists() for path in cached)  # cold: no other test read the first files
    run_dir = tmp_path / "ttbar"
    notebook = ROOT / "notebooks" / "ttbar_analysis.ipynb"
    result = embedded.af(
        "run", str(notebook), "-p", "n_files", "1", "--backend", "local", "--run-dir", str(run_dir), check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    executed = nbformat.read(run_dir / "ttbar_analysis.ipynb", as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # regions and variations (and the fit, when it converges on these few events)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert f"reading from {lake['client'].cache}" in printed
    assert f"{EVENTS} events in" in printed
    assert (run_dir / "histograms.root").stat().st_size > 0
    assert all(path.exists() for path in cached)


IN_HUB_ANALYSIS = """
import os, warnings
from coffea import processor
from dask_backends import new_cluster
from dask_backends.data import DataLake
from analyses import ttbar
warnings.simplefilter("ignore")
lake = DataLake.from_environment()
fileset = lake.fileset(["ttbar", "wjets"], n_files=1)
cluster = new_cluster("local", workers=1, worker_cores=1, worker_memory_gb=2)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
print("WORKER_CACHE", set(client.run(lambda: os.environ.get("AF_DATA_CACHE")).values()))
print("WORKER_MALLOC", set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()))
output = ttbar.run(fileset, processor.DaskExecutor(client=client, status=False))
print("NOTEBOOK_CACHE", lake.cache)
print("EVENTS", output["events"], "FILLED", output["hist"].sum().value > 0)
cluster.close()
"""


def test_notebook_runs_the_analysis_on_a_gateway_cluster_through_the_cache(
    embedded: RunningFacility, lake: dict[str, Any]
) -> None:
    dora = embedded.login("dora")
    reply = dora.post_spawn_form({"backend": "local", "cores": "1", "memory_gb": "2", "image": "coffea-2026"})
    assert reply.status_code == 200, reply.text[-2000:]
    server = dora.wait_ready()
    try:
        out = execute_in_kernel(f"{dora.url}{server['url']}", dora.token(), IN_HUB_ANALYSIS, timeout=240)
    finally:
        dora.stop_server()
    cache = embedded.runtime["data"]["caches"]["local-xcache"]["url"]
    assert f"NOTEBOOK_CACHE {cache}" in out
    assert f"WORKER_CACHE {{'{cache}'}}" in out  # the gateway's workers read through the same cache
    # Not distributed's nanny's glibc setting (backends.common.cluster_options.WORKER_ENVIRONMENT).
    assert "WORKER_MALLOC {None}" in out
    assert f"EVENTS {EVENTS} FILLED True" in out


# Last: stopping the cache leaves this process's XRootD client waiting on it for a while.
def test_cache_down_falls_back_to_origin(
    embedded: RunningFacility, lake: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    rpc = supervise.rpc(StateDir(embedded.state_dir))
    rpc.supervisor.stopProcess("xcache-local-xcache")
    try:
        lake_client = DataLake.from_environment(
            {
                "AF_DATA_ORIGIN": lake["client"].origin,
                "AF_DATA_CACHE": lake["client"].cache,
                "AF_DATA_PREFIXES": "/store/",
            }
        )
        with caplog.at_level(logging.WARNING, logger="dask_backends.data"):
            url = lake_client.url("/store/af/generated/wjets/wjets_000.root")
            with lake_client.open("/store/af/generated/wjets/wjets_000.root") as opened:
                entries = opened["Events"].num_entries
        assert url.startswith(lake_client.origin)
        assert entries == EVENTS // 2
        assert any("does not answer; reading from the origin" in r.getMessage() for r in caplog.records)
    finally:
        rpc.supervisor.startProcess("xcache-local-xcache")
    deadline = time.monotonic() + 20
    port = embedded.runtime["data"]["caches"]["local-xcache"]["port"]
    while not supervise.port_open(port) and time.monotonic() < deadline:
        time.sleep(0.3)
