"""A refusal in plain words for the panel: what is wrong and what to do, without HTTP codes,
field names or the gateway's wording ("worker_memory_gb must be <= 4.000000, got 16" becomes
"Worker memory can be at most 4 GB on This machine.").

The handlers answer both: `message` (the gateway's own words, for scripts and logs) and `plain`.
"""

from __future__ import annotations

import re
from typing import Any

# How each option's value reads after a number.
_UNITS = {"worker_memory_gb": " GB", "worker_cores": "", "worker_gpus": "", "workers": ""}
_NAMES = {
    "worker_memory_gb": "Worker memory",
    "worker_cores": "Worker cores",
    "worker_gpus": "Worker GPUs",
    "workers": "Workers",
    "cluster_name": "The cluster name",
    "image": "The software image",
}


def _number(text: str) -> str:
    value = float(text)
    return str(int(value)) if value == int(value) else f"{value:g}"


def _amount(field: str, text: str) -> str:
    value = _number(text)
    if field == "worker_cores":
        return f"{value} core" + ("" if value == "1" else "s")
    return f"{value}{_UNITS.get(field, '')}"


def plain(message: str, status: int, backend: dict[str, Any] | None) -> str:
    """The panel's sentence for a refusal of a request on `backend` (its facility.yaml description)."""
    where = backend["label"] if backend else "this backend"
    text = re.sub(r"^dask-gateway of '[^']*': ", "", message)
    bound = re.search(r"(\w+) must be ([<>])= ([\d.]+), got ([\d.]+)", text)
    if bound:
        field, side, limit = bound.group(1), bound.group(2), bound.group(3)
        name = _NAMES.get(field, field.replace("_", " ").capitalize())
        extreme = "can be at most" if side == "<" else "must be at least"
        return f"{name} {extreme} {_amount(field, limit)} on {where}."
    allowance = re.search(
        r"(\w+): (\S+) is more than your groups allow on '[^']*'; choose between (\S+) and (\S+)", text
    )
    if allowance:
        field, _, low, high = allowance.groups()
        name = _NAMES.get(field, field)
        return f"{name} can be {_number(low)} to {_amount(field, high)} for your groups on {where}."
    workers = re.search(r"workers: .* is out of range for '[^']*'; choose between (\d+) and (\d+)", text)
    if workers:
        return f"Workers can be {workers.group(1)} to {workers.group(2)} on {where}."
    name = re.match(r"cluster_name: ('.*') is not a usable name; (.*)", text)
    if name:
        return f"The cluster name {name.group(1)} cannot be used: {name.group(2)}."
    if "does not answer" in text:
        return (
            f"The Dask service of {where} does not answer. The facility may be down: "
            "try again later or ask its operator."
        )
    if re.search(r"Cluster \w+ not found", text):
        return "That cluster no longer exists: it was stopped or has ended."
    if "may not start clusters" in text or "no backend" in text:
        return f"You may not start Dask clusters on {where}."
    if "while starting" in text:
        return f"The cluster stopped while starting on {where}. Try again, or with smaller workers."
    if "not running after" in text:
        return f"The cluster did not start in time on {where}. It may still be waiting for resources."
    # Anything else: the message itself, as a sentence (still without the HTTP status).
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else f"{text}."
