"""Datasets by Rucio DID (facility.yaml data.rucio): the real Rucio server `af up` starts (gunicorn,
SQLite in the state folder), the origin registered as an RSE, `af data generate` / `import-samples`
registering files with bytes and adler32, DataLake.files("af:ttbar") resolving replicas to URLs
through the real XCache, the ttbar analysis reading them with the histograms of local files, and
clear errors for bad DIDs and a Rucio server that is down."""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests

from af import rucio_server
from af.data import COFFEA_VERSION
from dask_backends.data import DataLake, DataLakeError, UnknownDataset
from dask_backends.rucio_dids import RucioServer, client
from facility import FacilityError, from_dict
from facility.model import Rucio
from tests.harness import RunningFacility, embedded_raw, free_port_block, run_af

EVENTS = 3000  # per sample, in two files

pytestmark = pytest.mark.skipif(
    not (rucio_server.server_dir() / ".af-stamp").is_file(),
    reason="the Rucio server is not installed (scripts/install.d/30-rucio-server.sh)",
)


@pytest.fixture(scope="module")
def facility(start_facility: Any) -> RunningFacility:
    raw = embedded_raw()
    raw["data"]["rucio"] = {"url": "http://127.0.0.1:18080"}  # moves into the test's port block
    return start_facility(raw)


@pytest.fixture(scope="module")
def generated(facility: RunningFacility) -> dict[str, Any]:
    """Small samples written (and registered) by `af data generate` over the ones `af up` seeded."""
    lake = DataLake.from_environment({"AF_RUNTIME": str(facility.state_dir / "runtime.json")})
    seeded = [f["path"] for f in lake.files("af:ttbar")]
    result = facility.af("data", "generate", "--events", str(EVENTS), "--files", "2", "--seed", "7")
    runtime = facility.runtime
    data = runtime["data"]
    return {
        "seeded": seeded,
        "output": result.stdout,
        "origin_root": Path(data["origin"]["local_root"]),
        "cache_root": Path(data["caches"]["local-xcache"]["local_root"]),
        "rucio": RucioServer.from_runtime(data["rucio"]),
        "lake": DataLake.from_environment({"AF_RUNTIME": str(facility.state_dir / "runtime.json")}),
    }


def test_data_rucio_is_checked_with_clear_messages() -> None:
    raw = embedded_raw()
    raw["data"]["rucio"] = {"url": "http://rucio.example.org:443", "rse": "datalake"}
    with pytest.raises(FacilityError) as refused:
        from_dict(raw)
    message = str(refused.value)
    assert "data.rucio.url: 'http://rucio.example.org:443' is not allowed; must be http://127.0.0.1:PORT" in message
    assert (
        "data.rucio.rse: 'datalake' is not allowed; The origin's name as a Rucio Storage Element, upper-case" in message
    )
    raw["data"]["rucio"] = {"url": "http://127.0.0.1:8090"}
    assert from_dict(raw).data.rucio == Rucio(url="http://127.0.0.1:8090", scope="af", rse="AF_DATALAKE")


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def test_af_up_runs_rucio_with_the_origin_as_rse(facility: RunningFacility) -> None:
    runtime = facility.runtime
    rucio = runtime["data"]["rucio"]
    assert rucio["port"] == runtime["ports"]["dashboards"] + 4 and rucio["url"] == f"http://127.0.0.1:{rucio['port']}"
    assert requests.get(f"{rucio['url']}/ping", timeout=5).json() == {"version": "41.5.1"}
    status = facility.af("status")
    (row,) = [line for line in status.stdout.splitlines() if line.strip("│ ").startswith("rucio ")]
    assert [cell.strip() for cell in row.strip("│ ").split("│")][:3] == ["rucio", "up", str(rucio["port"])]
    # Served by gunicorn from its own venv, not by the facility's Python.
    listening = [c.pid for c in psutil.net_connections("tcp") if c.laddr.port == rucio["port"] and c.status == "LISTEN"]
    command = " ".join(psutil.Process(listening[0]).cmdline())
    assert "gunicorn" in command and str(rucio_server.server_dir()) in command
    assert (facility.state_dir / "rucio" / "rucio.db").is_file()
    assert oct((facility.state_dir / "rucio" / "rucio.cfg").stat().st_mode & 0o777) == "0o600"
    api = client(RucioServer.from_runtime(rucio))
    rse = api.get_rse(rucio["rse"])
    assert rse["deterministic"] is False  # PFNs name the origin's own layout
    (protocol,) = [p for p in rse["protocols"] if p["scheme"] == "root"]
    origin = runtime["data"]["origin"]["url"]
    assert f"root://{protocol['hostname']}:{protocol['port']}" == origin
    # `af up` registered the samples it seeded the empty lake with.
    assert {"ttbar", "wjets"} <= set(api.list_dids("af", {"name": "*"}, did_type="dataset"))


def test_generate_registers_files_with_bytes_and_adler32(generated: dict[str, Any]) -> None:
    assert "Registered in Rucio" in generated["output"] and "af:ttbar" in generated["output"]
    api = client(generated["rucio"])
    for sample in ("ttbar", "wjets"):
        files = sorted(api.list_files("af", sample), key=lambda f: f["name"])
        assert len(files) == 2  # the new generation only: the seeded one was detached
        for entry in files:
            on_disk = generated["origin_root"] / entry["name"].lstrip("/")
            assert entry["name"].startswith(f"/store/af/generated/{sample}/")
            assert entry["bytes"] == on_disk.stat().st_size
            assert entry["adler32"] == _adler32(on_disk)
    lake: DataLake = generated["lake"]
    assert [f["path"] for f in lake.files("af:ttbar")] == [f["path"] for f in lake.files("ttbar")]


def test_af_data_list_names_the_dids(facility: RunningFacility, generated: dict[str, Any]) -> None:
    listing = facility.af("data", "list").stdout
    rows = {line.split("│")[1].strip(): line for line in listing.splitlines() if line.count("│") > 3}
    assert "Rucio DID" in listing
    assert "af:ttbar" in rows["ttbar"] and "af:wjets" in rows["wjets"]


def test_a_new_generation_replaces_the_datasets_files(facility: RunningFacility, generated: dict[str, Any]) -> None:
    lake: DataLake = generated["lake"]
    api = client(generated["rucio"])
    previous = [f["path"] for f in lake.files("af:ttbar")]
    facility.af("data", "generate", "--sample", "ttbar", "--events", str(EVENTS), "--files", "2", "--seed", "7")
    current = [f["path"] for f in lake.files("af:ttbar")]
    assert current == [f["path"] for f in lake.files("ttbar")] and not set(current) & set(previous)
    # af data kept the generation before (runs in flight) and removed the seeded one: its replicas went too.
    assert all((generated["origin_root"] / path.lstrip("/")).is_file() for path in previous)
    replicas = {r["name"]: r["rses"] for r in api.list_replicas([{"scope": "af", "name": p} for p in previous])}
    assert all(replicas[path] for path in previous)
    assert not any((generated["origin_root"] / path.lstrip("/")).exists() for path in generated["seeded"])
    seeded = {
        r["name"]: r["rses"] for r in api.list_replicas([{"scope": "af", "name": p} for p in generated["seeded"]])
    }
    assert seeded == dict.fromkeys(generated["seeded"], {}) or not seeded


def test_did_resolves_to_cache_urls_and_histograms_equal_local(generated: dict[str, Any]) -> None:
    from analyses import ttbar

    lake: DataLake = generated["lake"]
    fileset = lake.fileset(["af:ttbar", "af:wjets"])
    urls = [url for entry in fileset.values() for url in entry["files"]]
    assert len(urls) == 4 and all(url.startswith(f"{lake.cache}//store/af/generated/") for url in urls)
    local = {
        name: {
            **entry,
            "files": {str(generated["origin_root"]) + lake.path_of(u): t for u, t in entry["files"].items()},
        }
        for name, entry in fileset.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_cache = ttbar.run(fileset)
        out_local = ttbar.run(local)
    assert out_cache["events"] == out_local["events"] == 2 * EVENTS
    assert set(out_cache["variations"]) == {"ttbar", "wjets"}  # the DIDs' names are the processes
    assert out_local["hist"].sum().value > 0
    assert np.array_equal(out_local["hist"].values(flow=True), out_cache["hist"].values(flow=True))
    assert np.array_equal(out_local["hist"].variances(flow=True), out_cache["hist"].variances(flow=True))
    first = lake.files("af:ttbar")[0]["path"]
    assert (generated["cache_root"] / first.lstrip("/")).exists()  # read through the XCache


def test_bad_dids_are_clear_errors(generated: dict[str, Any]) -> None:
    lake: DataLake = generated["lake"]
    with pytest.raises(
        UnknownDataset, match=r"no dataset named af:zprime in the Rucio server at .*datasets in af: .*af:ttbar"
    ):
        lake.files("af:zprime")
    with pytest.raises(UnknownDataset, match=r"no scope 'cms' in the Rucio server .*its scopes: .*af"):
        lake.fileset(["cms:ttbar"])
    with pytest.raises(DataLakeError, match=r"'af:' is not a Rucio DID; write scope:name, such as af:ttbar"):
        lake.files("af:")
    with pytest.raises(DataLakeError, match=r"the name 'tt bar' is not a Rucio name"):
        lake.files("af:tt bar")
    with pytest.raises(DataLakeError, match=r"the scope 'a b' is not a Rucio scope"):
        lake.files("a b:ttbar")
    assert generated["rucio"].password not in repr(lake)
    without = DataLake(origin=lake.origin, cache=lake.cache)
    with pytest.raises(DataLakeError, match=r"names a Rucio dataset, but this data lake has no Rucio server"):
        without.files("af:ttbar")


def test_rucio_down_or_refusing_is_a_clear_error(generated: dict[str, Any]) -> None:
    lake: DataLake = generated["lake"]
    nobody = f"http://127.0.0.1:{free_port_block(1)}"  # reserved, nothing listens there
    down = DataLake(origin=lake.origin, cache=lake.cache, rucio=RucioServer(nobody, "root", "af-root", "x"))
    with pytest.raises(DataLakeError, match=rf"the Rucio server at {nobody} does not answer"):
        down.files("af:ttbar")
    real = generated["rucio"]
    wrong = RucioServer(real.url, real.account, real.username, "not-the-password")
    refused = DataLake(origin=lake.origin, cache=lake.cache, rucio=wrong)
    with pytest.raises(DataLakeError, match=rf"the Rucio server at {real.url} refused account 'root'"):
        refused.files("af:ttbar")


def test_import_samples_registers_cms_datasets(facility: RunningFacility, generated: dict[str, Any]) -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "analysis-facility"
    if not (cache / f"coffea-{COFFEA_VERSION}.tar.gz").is_file():
        pytest.skip("coffea's sdist is not downloaded; scripts/test-install.d/45-coffea-samples.sh fetches it")
    facility.af("data", "import-samples")
    lake: DataLake = generated["lake"]
    (entry,) = lake.files("af:cms_dy")
    assert entry["path"] == "/store/af/cms/nano_dy.root"
    assert entry["adler32"] == _adler32(generated["origin_root"] / "store/af/cms/nano_dy.root")
    with lake.open(entry["path"]) as opened:
        assert opened["Events"].num_entries == 40


def test_af_down_stops_rucio_and_up_keeps_its_database(facility: RunningFacility, generated: dict[str, Any]) -> None:
    rucio = facility.runtime["data"]["rucio"]
    marker = facility.state_dir / "rucio" / rucio_server.BOOTSTRAPPED
    built = marker.stat().st_mtime
    before = generated["lake"].files("af:ttbar")
    run_af(facility.state_dir, "down")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rucio['url']}/ping", timeout=5)
    assert "rucio" in run_af(facility.state_dir, "status", check=False).stdout
    listing = run_af(facility.state_dir, "data", "list")  # the catalogue still, and why no DIDs
    assert "ttbar" in listing.stdout and "Rucio DID" not in listing.stdout
    assert f"no Rucio DIDs: the Rucio server at {rucio['url']} does not answer" in " ".join(listing.stderr.split())
    assert "ERROR" not in listing.stderr  # rucio-clients' own red log lines stay out
    # Up again in another port block: the origin moved, and the PFNs Rucio hands out follow it.
    port = str(free_port_block())
    run_af(facility.state_dir, "up", "--facility", str(facility.facility_file), "--port", port, "--no-sample-data")
    assert marker.stat().st_mtime == built  # bootstrapped once: the datasets are still there
    moved = DataLake.from_environment({"AF_RUNTIME": str(facility.state_dir / "runtime.json")})
    assert moved.origin != generated["lake"].origin and moved.rucio.url != rucio["url"]
    files = moved.files("af:ttbar")
    assert len(files) == 2 and files == before
    url = moved.fileset(["af:ttbar"])["af:ttbar"]["files"]
    assert all(u.startswith(f"{moved.cache}//store/") for u in url)
    assert moved.stat(files[0]["path"]) == files[0]["bytes"]
