"""`af data`: fill the facility's data lake and keep its dataset catalogue.

    af data generate --sample ttbar --sample wjets --events 200000 --files 4
    af data import-samples      # real CMS NanoAOD files from coffea's source distribution
    af data list

Files go under /store/af/ in the origin's folder (the running facility's, or --lake DIR); the
catalogue /store/af/catalogue.json lists the files of each sample and is what notebooks read.

A file name is never given new contents: an XCache keeps serving what it cached under a name
(it does not check the origin's modification time), so regenerated files would be read old.
Each `generate` writes a new generation folder (/store/af/generated/<sample>/<generation>/) and
points the catalogue at it; the generation before it stays for runs in flight, older ones go.
Imported files are written once; different contents under an existing name are refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from af import rucio_server
from af.runtime import StateDir
from dask_backends.data import CATALOGUE_PATH, TREE_NAME
from dask_backends.rucio_dids import RucioLookupError, client, unavailable
from facility.runtime import Runtime

console = Console()
err_console = Console(stderr=True)

COFFEA_VERSION = "2026.9.0"
# PyPI's sha256 of coffea-2026.9.0.tar.gz: a cached or downloaded file must be exactly that one.
COFFEA_SDIST_SHA256 = "7dfc1b54d9d1533c8a5bd8a5786d13272ea1a170b0817061d4478f721aedae04"
# Real CMS NanoAOD files shipped in coffea's source distribution (tests/samples/), as datasets.
CMS_SAMPLES = {
    "cms_dy": "nano_dy.root",
    "cms_dimuon": "nano_dimuon.root",
    "cms_ttbar_v12": "nano_tt_v12.root",
}
GENERATED_DIR = "/store/af/generated"
CMS_DIR = "/store/af/cms"
# By process (a ttbar variation has ttbar's). The generated W+jets sample is filtered (W + >= 2 jets,
# af.nanoaod.WJETS): the AGC's inclusive 61526.7 pb times the filter efficiency 0.05.
CROSS_SECTIONS_PB = {"ttbar": 831.76, "wjets": 61526.7 * 0.05}
WRITE_CHUNK = 100_000
# The kinds `af data generate` writes (af.nanoaod.SAMPLES; listed here so the CLI loads without numpy).
SAMPLE_KINDS = ("ttbar", "wjets", "ttbar_scaleup", "ttbar_scaledown", "ttbar_ME_var", "ttbar_PS_var")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def lake_root(state: StateDir, explicit: Path | None) -> Path:
    """The origin's folder: --lake, else the running facility's own data lake."""
    if explicit:
        return explicit.resolve()
    runtime = state.read_runtime()
    if runtime is None:
        _fail(f"no facility has been started in {state.root}: run `af up` first, or give --lake DIR", 2)
    origin = runtime.data.get("origin") or {}
    if not origin.get("managed"):
        where = origin.get("url", "none")
        _fail(f"this facility does not run its own data lake (origin {where}); give --lake DIR to write files", 2)
    return Path(origin["local_root"])


def _on_disk(root: Path, lake_path: str) -> Path:
    return root / lake_path.lstrip("/")


def read_catalogue(root: Path) -> dict[str, Any]:
    try:
        return json.loads(_on_disk(root, CATALOGUE_PATH).read_text())
    except FileNotFoundError:
        return {"version": 1, "samples": {}}


def write_catalogue(root: Path, catalogue: dict[str, Any]) -> Path:
    path = _on_disk(root, CATALOGUE_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(catalogue, indent=2) + "\n")
    tmp.replace(path)  # readers never see half a catalogue
    return path


def write_once(root: Path, lake_path: str, content: bytes) -> None:
    """Write a lake file that does not exist yet; the same contents again are fine, others are refused
    (a cache would go on serving the old ones under that name)."""
    path = _on_disk(root, lake_path)
    if path.exists():
        if path.read_bytes() == content:
            return
        _fail(
            f"refusing to rewrite {lake_path} in place with different contents: an XCache may go on serving the "
            "old ones; files in the data lake are never rewritten under the same name (remove it by hand if no "
            "cache has read it)",
            2,
        )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def _branch_types(chunk: dict[str, Any]) -> dict[str, Any]:
    import awkward as ak

    return {name: (ak.type(values) if isinstance(values, ak.Array) else values.dtype) for name, values in chunk.items()}


def new_generation() -> str:
    """A generation folder name never used before: UTC time, and random bits for two in one second."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def prune_generations(root: Path, sample: str, keep: set[str]) -> list[str]:
    """Remove a sample's generation folders except `keep`, and files of the old flat layout; returns
    the lake paths of the files removed (their Rucio replicas go too)."""
    folder = _on_disk(root, f"{GENERATED_DIR}/{sample}")
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.is_dir() and entry.name not in keep:
            removed += ["/" + str(f.relative_to(root)) for f in sorted(entry.rglob("*")) if f.is_file()]
            shutil.rmtree(entry)
        elif entry.is_file() and entry.name.startswith(f"{sample}_") and entry.suffix == ".root":
            removed.append("/" + str(entry.relative_to(root)))
            entry.unlink()  # written in place before generations existed
    return removed


def _seeded_uuids(seed: int, sample: str, index: int, count: int) -> Callable[[], uuid.UUID]:
    """The file's and its directories' UUIDs from the seed: the analysis seeds each chunk's random
    stream from the file's UUID, so "same seed, same files" must hold for the UUID too."""
    calls = itertools.count()
    return lambda: uuid.uuid5(uuid.NAMESPACE_URL, f"af-data:{seed}/{sample}/{index}/{count}/{next(calls)}")


def write_sample(
    root: Path,
    sample: str,
    events: int,
    files: int,
    seed: int,
    progress: Progress | None = None,
    generation: str | None = None,
) -> list[dict[str, Any]]:
    """Write `events` events of a sample into `files` NanoAOD files of a new generation folder;
    returns their catalogue entries."""
    import numpy as np
    import uproot

    from af import nanoaod

    generation = generation or new_generation()
    folder = _on_disk(root, f"{GENERATED_DIR}/{sample}/{generation}")
    if folder.exists():
        _fail(f"refusing to rewrite {GENERATED_DIR}/{sample}/{generation} in place: a cache may serve its old files", 2)
    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, nanoaod.SAMPLES.index(sample)])
    task = progress.add_task(f"{sample}", total=events) if progress else None
    per_file = [events // files + (1 if i < events % files else 0) for i in range(files)]
    entries = []
    for index, count in enumerate(per_file):
        lake_path = f"{GENERATED_DIR}/{sample}/{generation}/{sample}_{index:03d}.root"
        path = _on_disk(root, lake_path)
        with uproot.recreate(path, uuid_function=_seeded_uuids(seed, sample, index, count)) as out:
            tree = None
            written = 0
            sums = {"genWeight_sum": 0.0, "genWeight_sign_sum": 0.0}
            while written < count:
                size = min(WRITE_CHUNK, count - written)
                chunk = nanoaod.generate(sample, size, rng)
                if tree is None:
                    # NanoAOD names: nJet, Jet_pt (uproot's default would be Jet.pt).
                    tree = out.mktree(
                        TREE_NAME,
                        _branch_types(chunk),
                        counter_name=lambda collection: "n" + collection,
                        field_name=lambda collection, field: f"{collection}_{field}",
                    )
                tree.extend(chunk)
                sums = _add_weight_sums(sums, chunk["genWeight"])
                written += size
                if progress is not None:
                    progress.advance(task, size)
        entries.append({"path": lake_path, "events": count, "bytes": path.stat().st_size, **sums})
    return entries


def _add_weight_sums(sums: dict[str, float], weights: Any) -> dict[str, float]:
    """Running sums of genWeight and of its signs: the analysis normalises by them, not by the event count
    (a sample with negative weights has fewer effective events than entries)."""
    import numpy as np

    values = np.asarray(weights, dtype=np.float64)
    return {
        "genWeight_sum": sums["genWeight_sum"] + float(values.sum()),
        "genWeight_sign_sum": sums["genWeight_sign_sum"] + float(np.sign(values).sum()),
    }


def weight_sums(entries: list[dict[str, Any]]) -> dict[str, float]:
    """A sample's sums of genWeight and of its signs over its files (for the catalogue)."""
    return {key: sum(e[key] for e in entries) for key in ("genWeight_sum", "genWeight_sign_sum")}


@click.group("data")
def data() -> None:
    """Fill the facility's data lake (NanoAOD files) and keep its dataset catalogue."""


_lake_option = click.option(
    "--lake",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder the origin exports (default: the running facility's data lake).",
)


@data.command()
@click.option(
    "--sample",
    "samples",
    type=click.Choice(list(SAMPLE_KINDS)),
    multiple=True,
    help="Sample kinds to write (default: ttbar and wjets).",
)
@click.option(
    "--with-variations",
    is_flag=True,
    help="Also write the ttbar variation samples (scaleup, scaledown, ME_var, PS_var) the AGC's fit uses.",
)
@click.option("--events", type=click.IntRange(min=1), default=100_000, show_default=True, help="Events per sample.")
@click.option("--files", type=click.IntRange(min=1), default=2, show_default=True, help="Files per sample.")
@click.option("--seed", type=int, default=2026, show_default=True, help="Random seed (same seed, same files).")
@_lake_option
@click.pass_obj
def generate(
    state: StateDir,
    samples: tuple[str, ...],
    with_variations: bool,
    events: int,
    files: int,
    seed: int,
    lake: Path | None,
) -> None:
    """Write NanoAOD-schema files of ttbar-like and W+jets-like events into the data lake."""
    if files > events:
        _fail(f"--files {files} is more than --events {events}: each file needs at least one event", 2)
    chosen = list(samples or ("ttbar", "wjets"))
    if with_variations:
        chosen += [s for s in SAMPLE_KINDS if s.startswith("ttbar_") and s not in chosen]
    root = lake_root(state, lake)
    removed = generate_samples(root, tuple(chosen), events, files, seed)
    register_in_rucio(state.read_runtime(), root, chosen, removed)


def generate_samples(root: Path, samples: tuple[str, ...], events: int, files: int, seed: int) -> list[str]:
    """Write the samples into the lake folder `root` with a progress bar and list them in its catalogue;
    returns the lake paths of older generations' files it removed."""
    from af import nanoaod

    removed: list[str] = []
    catalogue = read_catalogue(root)
    columns = (
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for sample in samples:
            generation = new_generation()
            entries = write_sample(root, sample, events, files, seed, progress, generation)
            process, variation = nanoaod.process_and_variation(sample)
            previous = catalogue["samples"].get(sample, {}).get("generation")
            catalogue["samples"][sample] = {
                "kind": "generated",
                "generation": generation,
                "tree": TREE_NAME,
                "process": process,
                "variation": variation,
                "xsec_pb": CROSS_SECTIONS_PB[process],
                "events": sum(e["events"] for e in entries),
                **weight_sums(entries),
                "files": entries,
            }
            write_catalogue(root, catalogue)
            removed += prune_generations(root, sample, {generation, previous} - {None})
    console.print(f"Wrote {', '.join(samples)} into {root}; catalogue {CATALOGUE_PATH}")
    return removed


def seed_empty_lake(runtime: Runtime, events: int = 50_000, files: int = 2) -> bool:
    """Give a facility's own, still empty data lake the default samples, so the example notebook
    runs right after `af up`. Returns whether it wrote anything."""
    origin = runtime.data.get("origin") or {}
    if not origin.get("managed"):
        return False
    root = Path(origin["local_root"])
    if read_catalogue(root)["samples"]:
        return False
    console.print(f"The data lake is empty: writing the default samples ({events} events each) into {root}")
    generate_samples(root, ("ttbar", "wjets"), events, files, seed=2026)
    return True


def register_in_rucio(
    runtime: Runtime | None, root: Path, names: Iterable[str] | None = None, removed: Iterable[str] = ()
) -> list[str]:
    """Register the catalogue's samples (all, or `names`) with the facility's Rucio server as datasets,
    when facility.yaml sets data.rucio and `root` is the folder its origin exports, and delete the
    replicas of the `removed` lake paths; returns the datasets' DIDs."""
    if runtime is None or not rucio_server.settings_of(runtime):
        return []
    origin = runtime.data.get("origin") or {}
    if not origin.get("managed") or Path(origin["local_root"]).resolve() != root.resolve():
        return []  # --lake elsewhere: files the origin does not serve
    from rucio.common.exception import RucioException

    samples = read_catalogue(root)["samples"]
    chosen = {name: samples[name] for name in (names if names is not None else samples) if name in samples}
    try:
        dids = rucio_server.register_samples(runtime, root, chosen)
        rucio_server.forget_replicas(runtime, list(removed))
    except (RucioLookupError, RucioException) as exc:
        reason = exc if isinstance(exc, RucioLookupError) else unavailable(rucio_server.server_of(runtime), exc)
        _fail(f"the files are in the lake, but registering them in Rucio failed: {reason}")
    if dids:
        console.print(f"Registered in Rucio ({rucio_server.settings_of(runtime)['url']}): {', '.join(dids)}")
    return dids


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "analysis-facility"


def coffea_sdist(explicit: Path | None) -> Path:
    """coffea's source distribution: --sdist, the download cache, or a fresh `pip download`."""
    if explicit:
        if not explicit.is_file():
            _fail(f"--sdist {explicit}: no such file", 2)
        return explicit
    target = cache_dir() / f"coffea-{COFFEA_VERSION}.tar.gz"
    if target.is_file():
        if _sha256(target) == COFFEA_SDIST_SHA256:
            return target
        console.print(f"{target} is not PyPI's coffea {COFFEA_VERSION} (sha256 differs); downloading it again.")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"Downloading coffea {COFFEA_VERSION}'s source distribution from PyPI into {target.parent} ...")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        + [f"coffea=={COFFEA_VERSION}", "--dest", str(target.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not target.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        _fail(
            f"could not download coffea {COFFEA_VERSION}'s source distribution from PyPI ({last}). "
            f"Offline? Copy coffea-{COFFEA_VERSION}.tar.gz to {target.parent} or pass --sdist PATH."
        )
    if _sha256(target) != COFFEA_SDIST_SHA256:
        target.unlink()
        _fail(f"the downloaded coffea {COFFEA_VERSION} source distribution does not have PyPI's sha256; removed it")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@data.command("import-samples")
@click.option("--sdist", type=click.Path(dir_okay=False, path_type=Path), default=None, help="coffea sdist to use.")
@_lake_option
@click.pass_obj
def import_samples(state: StateDir, sdist: Path | None, lake: Path | None) -> None:
    """Copy the real CMS NanoAOD samples of coffea's source distribution into the data lake."""
    import uproot

    root = lake_root(state, lake)
    archive = coffea_sdist(sdist)
    catalogue = read_catalogue(root)
    folder = _on_disk(root, CMS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if "/tests/samples/" in m.name and m.isfile()}
        for dataset, filename in CMS_SAMPLES.items():
            member = members.get(filename)
            if member is None:
                _fail(f"{archive} has no tests/samples/{filename}; is it coffea's source distribution?")
            source = tar.extractfile(member)
            assert source is not None
            lake_path = f"{CMS_DIR}/{filename}"
            write_once(root, lake_path, source.read())
            with uproot.open(_on_disk(root, lake_path)) as opened:
                tree = opened[TREE_NAME]
                events = int(tree.num_entries)
                weights = tree["genWeight"].array(library="np") if "genWeight" in tree else [1.0] * events
            sums = _add_weight_sums({"genWeight_sum": 0.0, "genWeight_sign_sum": 0.0}, weights)
            catalogue["samples"][dataset] = {
                "kind": "cms-nanoaod",
                "tree": TREE_NAME,
                "source": f"coffea-{COFFEA_VERSION} tests/samples/{filename}",
                "process": dataset,
                "variation": "nominal",
                "events": events,
                **sums,
                "files": [{"path": lake_path, "events": events, "bytes": member.size, **sums}],
            }
            console.print(f"  {dataset:<14} {lake_path} ({events} events)")
    write_catalogue(root, catalogue)
    console.print(f"Imported {len(CMS_SAMPLES)} CMS NanoAOD samples into {root}")
    register_in_rucio(state.read_runtime(), root, list(CMS_SAMPLES))


@data.command("list")
@_lake_option
@click.pass_obj
def list_datasets(state: StateDir, lake: Path | None) -> None:
    """Show the datasets of the catalogue."""
    root = lake_root(state, lake)
    samples = read_catalogue(root)["samples"]
    if not samples:
        console.print(f"The data lake in {root} has no datasets yet; run `af data generate`.")
        return
    registered = rucio_datasets(state.read_runtime() if lake is None else None)
    table = Table(title=f"Datasets in {root}")
    columns = ["dataset", "kind", "files", "events", "sum of genWeight", "MB"]
    for column in columns + (["Rucio DID"] if registered is not None else []):
        table.add_column(column)
    for name, entry in sorted(samples.items()):
        size = sum(f["bytes"] for f in entry["files"]) / 1e6
        weights = f"{entry['genWeight_sum']:.6g}" if "genWeight_sum" in entry else "-"
        row = [name, entry["kind"], str(len(entry["files"])), str(entry["events"]), weights, f"{size:.1f}"]
        if registered is not None:
            row.append(registered.get(name, "not registered"))
        table.add_row(*row)
    console.print(table)


def rucio_datasets(runtime: Runtime | None) -> dict[str, str] | None:
    """sample -> DID of the datasets the facility's Rucio server holds; None without data.rucio.
    A server that does not answer is said so, and the list goes on without it."""
    if runtime is None or not rucio_server.settings_of(runtime):
        return None
    from rucio.common.exception import RucioException

    settings = rucio_server.settings_of(runtime)
    server = rucio_server.server_of(runtime)
    try:
        names = client(server).list_dids(settings["scope"], {"name": "*"}, did_type="dataset")
        return {name: f"{settings['scope']}:{name}" for name in names}
    except (RucioLookupError, RucioException) as exc:
        reason = exc if isinstance(exc, RucioLookupError) else unavailable(server, exc)
        err_console.print(f"[yellow]Warning:[/] no Rucio DIDs: {reason}", markup=True, highlight=False)
        return None
