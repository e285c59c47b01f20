"""`af run --backend <local backend>`: papermill with the kernel on this host."""

from __future__ import annotations

import logging
import os
import re
import sys

from backends.common.run_request import RunFailed, RunRequest

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def run_local(request: RunRequest) -> None:
    """Run the kernel on this host with papermill; raise RunFailed naming the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    handler = logging.FileHandler(request.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    papermill_log = logging.getLogger("papermill")
    papermill_log.addHandler(handler)
    papermill_log.setLevel(logging.INFO)
    saved = {k: os.environ.get(k) for k in request.environment}
    os.environ.update(request.environment)  # the kernel inherits this process's environment
    try:
        with open(request.log, "a") as log_file:
            papermill.execute_notebook(
                str(request.notebook),
                str(request.output),
                parameters=request.parameters,
                cwd=str(request.run_dir),  # files the notebook writes land in the run folder
                log_output=True,
                stdout_file=log_file,
                stderr_file=log_file,
                progress_bar=sys.stderr.isatty(),
                execution_timeout=request.cell_timeout,
            )
    except PapermillExecutionError as exc:
        with open(request.log, "a") as log_file:  # the traceback, for whoever reads the log later
            log_file.write(ANSI_ESCAPE.sub("", "\n".join([f"cell {exc.exec_count} failed:", *exc.traceback])) + "\n")
        raise RunFailed(f"cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}") from None
    finally:
        papermill_log.removeHandler(handler)
        handler.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
