"""`af run`'s run.log: each output once, a library warning shown once and counted, cells marked and
their progress shown; the report with the figures beside the executed notebook."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from rich.console import Console

from af import run_report
from backends.common.run_log import RunLog

pytestmark = pytest.mark.no_facility

WARNING = (
    "/venv/coffea/nanoevents/schemas/nanoaod.py:297: RuntimeWarning: Missing cross-reference index for Jet_muonIdx1\n"
    "  warnings.warn(\n"
)


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("papermill", level, __file__, 1, message, None, None)


def test_run_log_writes_each_output_once_and_summarises_warnings() -> None:
    log, screen = io.StringIO(), io.StringIO()
    handler = RunLog(log, total_cells=2, console=Console(file=screen, width=100))
    handler.emit(_record(logging.INFO, "Executing Cell 1---------------------------------------"))
    handler.emit(_record(logging.INFO, "120000 events in 3.2 s\n"))
    for _ in range(16):
        handler.emit(_record(logging.WARNING, WARNING))
    handler.emit(_record(logging.WARNING, "a plain message on stderr\n"))
    handler.emit(_record(logging.INFO, "Ending Cell 1------------------------------------------"))
    counts = handler.finish()
    text = log.getvalue()
    assert text.count("120000 events in 3.2 s") == 1
    assert text.count("Missing cross-reference index for Jet_muonIdx1") == 2  # once shown, once in the summary
    assert text.count("warnings.warn(") == 1
    assert "a plain message on stderr" in text
    assert "   16 x RuntimeWarning: Missing cross-reference index for Jet_muonIdx1" in text
    assert "cell 1 of 2" in text
    assert counts == {"cells_run": 1, "warnings": 16, "distinct": 1}
    assert "[#.] cell 1/2 done in" in screen.getvalue()


def test_report_writes_figures_and_html(tmp_path: Path) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
    notebook = new_notebook(
        cells=[
            new_code_cell(
                "print('hi')", execution_count=1, outputs=[new_output("stream", name="stdout", text="hi <b>\n")]
            ),
            new_code_cell("plot()", execution_count=2, outputs=[new_output("display_data", data={"image/png": png})]),
        ]
    )
    path = tmp_path / "analysis.ipynb"
    nbformat.write(notebook, path)
    written = run_report.write(path, "local", 12.3, {"n_files": 1})
    assert [p.name for p in written["figures"]] == ["cell2-0.png"]
    assert (tmp_path / "figures" / "cell2-0.png").read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "report.html").read_text()
    assert "hi &lt;b&gt;" in page and 'src="figures/cell2-0.png"' in page
    assert "n_files=1" in page and "12.3 s" in page
