"""A MemoryError in a kernel of a local notebook server says which limit it met and what to do.

The server's processes carry RLIMIT_DATA of the form's memory (backends.local.memory_limit): a
cell that asks for more gets Python's MemoryError, usually with no message at all, and nothing
on the page said that the limit was the size chosen on the spawn page. IPython's own hook for
one exception type (InteractiveShell.set_custom_exc) shows the traceback with a message that names
the limit. Installed by kernel_startup.py, which the spawner gives kernels as $PYTHONSTARTUP.

Processes of a server that together pass its memory cgroup's limit are stopped by the Linux
kernel's OOM killer, the largest first, which is often the notebook's kernel. JupyterLab would say
only that the kernel "appears to have died"; the facility's lab extension shows the limit instead
(af_dask_lab.kernel_stops, on the server's side). The kernel that starts again also says why in
the first cell it runs: each kernel notes the cgroup's count of OOM kills when it
starts, in a file beside its connection file that a normal shutdown or restart removes; a kernel
that finds its predecessor's note (that one was killed) and a higher count now knows it took the
predecessor's place after the memory limit stopped it.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

LIMIT_VARIABLE = "MEM_LIMIT"  # bytes, as JupyterHub exports the spawner's mem_limit
CGROUP_VARIABLE = "AF_MEMORY_CGROUP"  # the server's memory cgroup folder (backends.local.memory_limit)
NOTE_SUFFIX = ".af-oom-kills"  # the kernel's note, beside its connection file


def limit_words(limit_bytes: str | None) -> str | None:
    """'1 GB' for '1073741824' (the form asks for GB, meaning GiB); None without a usable limit."""
    try:
        gib = int(limit_bytes or "") / 1024**3
    except ValueError:
        return None
    return f"{gib:.2f}".rstrip("0").rstrip(".") + " GB" if gib > 0 else None


def explained(error: BaseException, limit: str) -> MemoryError:
    """The error, with the limit and the ways out in plain words after its own message, if any."""
    own = str(error).strip()
    advice = (
        f"this notebook server may use at most {limit} of memory (the size chosen when it was "
        "started), and this step asked for more. Work on the data in smaller pieces, run it on a "
        "Dask cluster, or stop the server (File > Hub Control Panel) and start it with more memory."
    )
    return MemoryError(f"{own} ({advice})" if own else advice)


def _show_memory_error(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType, tb_offset: int | None = None
) -> None:
    limit = limit_words(os.environ.get(LIMIT_VARIABLE))
    shown = explained(value, limit) if limit else value
    shell.showtraceback((etype, shown, tb), tb_offset=tb_offset)


def install() -> bool:
    """Register the message in the running IPython (a kernel); False outside IPython or without a limit."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or limit_words(os.environ.get(LIMIT_VARIABLE)) is None:
        return False
    shell.set_custom_exc((MemoryError,), _show_memory_error)
    watch_for_oom_restart(shell, _connection_file())
    return True


def oom_kills(cgroup: str | None) -> int | None:
    """How many processes the OOM killer has stopped in this cgroup (v1: memory.oom_control, v2:
    memory.events); None when it cannot be read."""
    if not cgroup:
        return None
    for name in ("memory.oom_control", "memory.events"):
        try:
            lines = (Path(cgroup) / name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def stopped_words(limit: str) -> str:
    """What the kernel that started again says, in plain words."""
    return (
        f"Your kernel was stopped and started afresh: this notebook server may use at most {limit} of "
        "memory (the size chosen when it was started), its processes together asked for more, and the "
        "system stopped the kernel, which used the most. Its variables are gone. Run the cells again "
        "with the data in smaller pieces, run the work on a Dask cluster, or stop the server "
        "(File > Hub Control Panel) and start it with more memory."
    )


def _connection_file() -> str | None:
    try:
        from ipykernel.kernelapp import IPKernelApp
    except ImportError:
        return None
    if not IPKernelApp.initialized():
        return None
    app = IPKernelApp.instance()
    return getattr(app, "abs_connection_file", None) or app.connection_file or None


def watch_for_oom_restart(shell: Any, connection_file: str | None, environ: Any = os.environ) -> bool:
    """Note the cgroup's OOM kills for this kernel; if its predecessor was stopped by the memory
    limit, say so once, before the first cell's own output. True when it says so."""
    limit = limit_words(environ.get(LIMIT_VARIABLE))
    kills = oom_kills(environ.get(CGROUP_VARIABLE))
    if limit is None or kills is None or not connection_file:
        return False
    note = Path(connection_file + NOTE_SUFFIX)
    try:
        before = int(note.read_text())
    except (OSError, ValueError):
        before = None  # the kernel's first start, or the one before it shut down normally
    try:
        note.write_text(str(kills))
    except OSError:
        return False
    atexit.register(note.unlink, missing_ok=True)  # a shutdown or a restart asked for: no note
    if before is None or kills <= before:
        return False

    def say_once(*_: Any) -> None:
        shell.events.unregister("pre_run_cell", say_once)
        print(stopped_words(limit), file=sys.stderr, flush=True)

    shell.events.register("pre_run_cell", say_once)
    return True
