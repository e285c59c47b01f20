"""After `af run`: the executed notebook's figures as PNG files and a short HTML report beside it.

<run dir>/figures/cell<N>-<k>.png   every image/png output, in cell order
<run dir>/report.html               notebook, backend, time, parameters, each cell's text output
                                    (shortened) and its figures
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

TEXT_LIMIT = 2000  # characters of a cell's text output in the report


def _text(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    data = output.get("data", {})
    return "" if "image/png" in data else "".join(data.get("text/plain", ""))


def write(output_notebook: Path, backend: str, seconds: float, parameters: dict[str, Any]) -> dict[str, Any]:
    """Write figures/ and report.html beside the executed notebook; returns what was written."""
    import nbformat

    notebook = nbformat.read(output_notebook, as_version=4)
    folder = output_notebook.parent
    figures_dir = folder / "figures"
    sections, figures = [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        number = cell.get("execution_count") or len(sections) + 1
        texts, images = [], []
        for index, output in enumerate(cell.get("outputs", [])):
            png = output.get("data", {}).get("image/png")
            if png:
                figures_dir.mkdir(exist_ok=True)
                path = figures_dir / f"cell{number}-{index}.png"
                path.write_bytes(base64.b64decode(png))
                figures.append(path)
                images.append(f'<img src="figures/{path.name}" style="max-width:100%">')
            elif text := _text(output):
                texts.append(text)
        body = "".join(texts)
        if len(body) > TEXT_LIMIT:
            body = body[:TEXT_LIMIT] + f"\n... ({len(body) - TEXT_LIMIT} more characters in the notebook)"
        if body or images:
            pre = f"<pre>{html.escape(body)}</pre>" if body else ""
            sections.append(f"<h3>cell {number}</h3>{pre}{''.join(images)}")
    rows = {
        "notebook": output_notebook.name,
        "backend": backend,
        "time": f"{seconds:.1f} s",
        "parameters": ", ".join(f"{k}={v!r}" for k, v in parameters.items()) or "defaults",
        "figures": str(len(figures)),
    }
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
    report = folder / "report.html"
    report.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(output_notebook.stem)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{background:#f4f4f4;padding:8px;"
        "overflow-x:auto}th{text-align:left;padding-right:1em}</style></head><body>"
        f"<h1>{html.escape(output_notebook.stem)}</h1><table>{table}</table>{''.join(sections)}</body></html>\n"
    )
    return {"report": report, "figures": figures}
