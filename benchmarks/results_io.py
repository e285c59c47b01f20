"""Where every benchmark puts what it measured: `<name>.json` and `<name>.png` in one folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write_results(
    name: str, report: dict[str, Any], plot: Callable[[dict[str, Any], Path], None], out: Path = RESULTS
) -> tuple[Path, Path]:
    """Write the report as `out/<name>.json`, draw it with `plot` into `out/<name>.png`; return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    data, picture = out / f"{name}.json", out / f"{name}.png"
    data.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, picture)
    print(f"wrote {data} and {picture}")
    return data, picture
