"""`af usage --plot`: the table of af.usage as horizontal bars, one panel per kind of hours (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from facility.usage_report import Total  # noqa: E402

MOST = 30  # bars per panel; the rest are summed into one
PANELS = (("core_hours", "core-hours"), ("memory_gb_hours", "memory GB-hours"), ("gpu_hours", "GPU-hours"))


def _folded(found: list[Total]) -> list[Total]:
    """At most MOST bars: the others summed into one."""
    if len(found) <= MOST:
        return found
    rest = found[MOST - 1 :]
    others = Total(
        f"{len(rest)} others",
        sum(t.core_hours for t in rest),
        sum(t.memory_gb_hours for t in rest),
        sum(t.gpu_hours for t in rest),
    )
    return [*found[: MOST - 1], others]


def write_plot(path: Path, found: list[Total], by: str, title: str) -> None:
    """Bars of core-, memory- and (when any) GPU-hours per user, group or backend, the most used on top."""
    bars = _folded(found)[::-1]  # barh draws from the bottom
    panels = [(key, label) for key, label in PANELS if key != "gpu_hours" or any(t.gpu_hours for t in bars)]
    height = 1.5 + 0.35 * len(bars)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), height), sharey=True, squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        ax.barh([t.key for t in bars], [getattr(t, key) for t in bars], color="#1f77b4")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(by)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
