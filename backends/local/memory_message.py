"""A MemoryError in a kernel of a local notebook server says which limit it met and what to do.

The server's processes carry RLIMIT_DATA of the form's memory (backends.local.memory_limit): a
cell that asks for more gets Python's MemoryError, usually with no message at all, and nothing
on the page said that the limit was the size chosen on the spawn page. IPython's own hook for
one exception type (InteractiveShell.set_custom_exc) shows the traceback with a message that names
the limit. Installed by kernel_startup.py, which the spawner gives kernels as $PYTHONSTARTUP.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

LIMIT_VARIABLE = "MEM_LIMIT"  # bytes, as JupyterHub exports the spawner's mem_limit


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
    return True
