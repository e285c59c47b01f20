"""run.log of `af run` (local kernel): each cell's output once, library warnings summarised, and the
cell progress on the terminal.

papermill hands every output of a cell to its logger (stdout as INFO, stderr as WARNING) and marks
cells with "Executing Cell N" lines; this handler is the only place they are written, so nothing is
logged twice. A Python warning (`file:line: Category: message` and its source line) is written the
first time it appears; repeats are counted and listed once at the end.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import IO, Any

from rich.console import Console

WARNING_LINE = re.compile(r"^(?P<where>\S+:\d+): (?P<category>\w*Warning): (?P<message>.*)$")
CELL_MARK = re.compile(r"^(Executing|Ending) Cell (\d+)-*$")


class RunLog(logging.Handler):
    """A logging handler for papermill's logger that writes run.log and shows cell progress."""

    def __init__(self, log_file: IO[str], total_cells: int, console: Console | None = None) -> None:
        super().__init__(logging.INFO)
        self.log_file = log_file
        self.total_cells = total_cells
        self.console = console
        self.warnings: Counter[str] = Counter()
        self.cells_run = 0
        self._cell_started = 0.0
        self._skip_source_line = False

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        mark = CELL_MARK.match(text.strip())
        if mark:
            self._cell(mark.group(1), int(mark.group(2)))
            return
        if not text.endswith("\n"):
            text += "\n"  # papermill's own messages ("Input Notebook: ...") come without one
        self.log_file.write(self._filter(text) if record.levelno >= logging.WARNING else text)
        self.log_file.flush()

    def _cell(self, kind: str, number: int) -> None:
        stamp = time.strftime("%H:%M:%S")
        if kind == "Executing":
            self._cell_started = time.perf_counter()
            self.log_file.write(f"\n--- {stamp} cell {number} of {self.total_cells} ---\n")
        else:
            self.cells_run += 1
            seconds = time.perf_counter() - self._cell_started
            if self.console is not None:
                bar = "#" * number + "." * max(self.total_cells - number, 0)
                line = f"  [{bar}] cell {number}/{self.total_cells} done in {seconds:.1f} s"
                self.console.print(line, markup=False, highlight=False)
        self.log_file.flush()

    def _filter(self, text: str) -> str:
        """Keep the first of each distinct warning; count the rest."""
        kept = []
        for line in text.splitlines(keepends=True):
            if self._skip_source_line and line.startswith("  "):
                self._skip_source_line = False
                continue  # the `warnings.warn(` source line under a repeated warning
            self._skip_source_line = False
            match = WARNING_LINE.match(line.strip())
            if match:
                key = f"{match['category']}: {match['message']}"
                self.warnings[key] += 1
                if self.warnings[key] > 1:
                    self._skip_source_line = True
                    continue
            kept.append(line)
        return "".join(kept)

    def summary(self) -> str:
        """The library warnings of the run, each with how often it came."""
        if not self.warnings:
            return ""
        lines = [f"{count:>5} x {key}" for key, count in self.warnings.most_common()]
        return "\nlibrary warnings (each shown once above):\n" + "\n".join(lines) + "\n"

    def finish(self) -> dict[str, Any]:
        summary = self.summary()
        if summary:
            self.log_file.write(summary)
            self.log_file.flush()
        return {"cells_run": self.cells_run, "warnings": sum(self.warnings.values()), "distinct": len(self.warnings)}
