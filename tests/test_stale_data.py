"""Regenerated data is never served old by the XCache: `af data generate` writes a new generation
under new names and moves the catalogue to it; `af data` refuses to give an existing name new
contents. Real XRootD origin and XCache of the embedded facility (`af up`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from af.data import write_once
from dask_backends import failover
from dask_backends.data import CATALOGUE_PATH, DataLake
from tests.harness import RunningFacility


def _lake(embedded: RunningFacility) -> tuple[DataLake, Path, Path]:
    data = embedded.runtime["data"]
    cache = data["caches"]["local-xcache"]
    failover.forget()
    return (
        DataLake(origin=data["origin"]["url"], cache=cache["url"]),
        Path(data["origin"]["local_root"]),
        Path(cache["local_root"]),
    )


def _generate(embedded: RunningFacility, events: int) -> None:
    embedded.af("data", "generate", "--sample", "wjets", "--events", str(events), "--files", "2", "--seed", "4")


def _events_through_cache(lake: DataLake) -> int:
    from analyses import ttbar

    fileset = lake.fileset(["wjets"])
    assert all(url.startswith(lake.cache) for e in fileset.values() for url in e["files"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ttbar.run(fileset, chunksize=2000)["events"]


def test_regenerated_files_are_read_new_through_the_cache(embedded: RunningFacility) -> None:
    lake, origin_root, cache_root = _lake(embedded)
    _generate(embedded, 3000)
    first = [e["path"] for e in lake.files("wjets")]
    assert _events_through_cache(lake) == 3000
    assert all((cache_root / path.lstrip("/")).exists() for path in first)  # the cache holds them now

    _generate(embedded, 5000)
    second = [e["path"] for e in lake.files("wjets")]
    assert not set(first) & set(second)  # a new generation: new names
    assert _events_through_cache(lake) == 5000  # not 3000 from the cache's copies

    # Why names must change: the XCache serves what it cached under a name, whatever the origin
    # now holds there (XRootD 5.5 does not compare modification times).
    in_place = origin_root / first[0].lstrip("/")
    in_place.write_bytes((origin_root / second[0].lstrip("/")).read_bytes())
    with lake.open(first[0], use_cache=True) as opened:
        assert opened["Events"].num_entries == 1500  # the old contents, served by the cache
    with lake.open(first[0], use_cache=False) as opened:
        assert opened["Events"].num_entries == 2500

    # The generation before the current one stays for runs in flight; older ones go.
    _generate(embedded, 4000)
    third = [e["path"] for e in lake.files("wjets")]
    assert all((origin_root / p.lstrip("/")).exists() for p in second + third)
    assert not any((origin_root / p.lstrip("/")).exists() for p in first)
    catalogue = json.loads((origin_root / CATALOGUE_PATH.lstrip("/")).read_text())
    assert catalogue["samples"]["wjets"]["events"] == 4000
    assert all(f"/{catalogue['samples']['wjets']['generation']}/" in p for p in third)


def test_af_data_refuses_to_rewrite_a_file_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "store/af/cms").mkdir(parents=True)
    write_once(tmp_path, "/store/af/cms/sample.root", b"first")
    write_once(tmp_path, "/store/af/cms/sample.root", b"first")  # the same contents again: nothing to refuse
    with pytest.raises(SystemExit) as exited:
        write_once(tmp_path, "/store/af/cms/sample.root", b"second")
    assert exited.value.code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "refusing to rewrite /store/af/cms/sample.root in place with different contents" in message
    assert (tmp_path / "store/af/cms/sample.root").read_bytes() == b"first"
