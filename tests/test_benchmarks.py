"""The benchmarks still run against the code they measure: each module imports, every name it
imports (inside functions too, where most of them import lazily) exists, and the plain uproot
implementation fills the analysis's histograms. Seconds, not a benchmark run: no facility."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.no_facility

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


def _parse(path: Path, attempts: int = 3) -> ast.Module:
    """ast.parse, asked again on CPython 3.11.7's spurious "AST constructor recursion depth mismatch"
    (python/cpython#106905, fixed in 3.11.8): its AST builder's depth counter is shared, and a
    worker with other threads running (Dask clients of earlier tests) hit it in CI run 12."""
    for attempt in range(attempts):
        try:
            return ast.parse(path.read_text(), str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _imported_names(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every import statement in the file, at any depth."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("name", MODULES)
def test_every_name_a_benchmark_imports_exists(name: str) -> None:
    missing = []
    for line, module, attribute in _imported_names(BENCHMARKS / f"{name}.py"):
        imported = importlib.import_module(module)
        if attribute is None or hasattr(imported, attribute):
            continue
        try:  # `from package import submodule`
            importlib.import_module(f"{module}.{attribute}")
        except ModuleNotFoundError:
            missing.append(f"line {line}: from {module} import {attribute}")
    assert not missing, f"benchmarks/{name}.py imports names that do not exist: {missing}"


@pytest.mark.parametrize("chunksize", [700, 1500])
def test_plain_ttbar_fills_the_analysis_histograms(tmp_path: Path, chunksize: int) -> None:
    """Same histograms (every variation, JER smearing included) from both at the same chunk size;
    700 does not divide the files' entries, so the chunks follow coffea's even split."""
    from af.data import generate_samples, read_catalogue
    from analyses import ttbar
    from benchmarks import ttbar_plain

    generate_samples(tmp_path, ("ttbar", "wjets"), 2_000, 2, seed=7)
    fileset = {
        sample: {
            "files": {str(tmp_path / f["path"].lstrip("/")): entry["tree"] for f in entry["files"]},
            "metadata": {"sample": sample, **{k: v for k, v in entry.items() if k != "files"}},
        }
        for sample, entry in read_catalogue(tmp_path)["samples"].items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coffea's and uproot's deprecation notices
        coffea = ttbar.run(fileset, chunksize=chunksize)
    plain = ttbar_plain.run(fileset, chunksize=chunksize)
    assert plain["events"] == coffea["events"] == 4_000
    assert coffea["hist"].sum().value > 0
    assert list(plain["hist"].axes["variation"]) == list(coffea["hist"].axes["variation"])
    assert list(plain["hist"].axes["process"]) == list(coffea["hist"].axes["process"])
    np.testing.assert_allclose(plain["hist"].values(), coffea["hist"].values(), rtol=1e-9)
    np.testing.assert_allclose(plain["hist"].variances(), coffea["hist"].variances(), rtol=1e-9)
