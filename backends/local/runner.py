"""`af run --backend <local backend>`: papermill with the kernel on this host."""

from __future__ import annotations

import logging
import os
import re

from rich.console import Console

from backends.common.run_log import RunLog
from backends.common.run_request import RunFailed, RunRequest

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
console = Console()


def run_local(request: RunRequest) -> None:
    """Run the kernel on this host with papermill; raise RunFailed naming the failing cell."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    total_cells = len(nbformat.read(request.notebook, as_version=4).cells) + (1 if request.parameters else 0)
    log_file = open(request.log, "a")  # noqa: SIM115 - closed in finally, after the handler
    # papermill's logger carries every output once (stdout INFO, stderr WARNING) and the cell marks:
    # RunLog writes them to run.log (warnings summarised) and prints each cell's progress.
    handler = RunLog(log_file, total_cells, console)
    papermill_log = logging.getLogger("papermill")
    papermill_log.addHandler(handler)
    papermill_log.setLevel(logging.INFO)
    papermill_log.propagate = False  # not also to the root logger's stderr
    saved = {k: os.environ.get(k) for k in request.environment}
    os.environ.update(request.environment)  # the kernel inherits this process's environment
    # The kernel inherits file descriptor 2 too: its own notices (ipykernel's "running over TCP
    # without encryption") go to run.log instead of the terminal.
    saved_stderr = os.dup(2)
    os.dup2(log_file.fileno(), 2)
    try:
        papermill.execute_notebook(
            str(request.notebook),
            str(request.output),
            parameters=request.parameters,
            cwd=str(request.run_dir),  # files the notebook writes land in the run folder
            log_output=True,
            progress_bar=False,  # RunLog shows the cells
            execution_timeout=request.cell_timeout,
        )
    except PapermillExecutionError as exc:
        # the traceback, for whoever reads the log later
        log_file.write(ANSI_ESCAPE.sub("", "\n".join([f"cell {exc.exec_count} failed:", *exc.traceback])) + "\n")
        raise RunFailed(f"cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}") from None
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        counts = handler.finish()
        if counts["warnings"]:
            console.print(
                f"  {counts['warnings']} library warnings ({counts['distinct']} distinct), summarised in run.log"
            )
        papermill_log.removeHandler(handler)
        handler.close()
        log_file.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
