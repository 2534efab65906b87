"""How sizes and growth rates are written for people, in one place for every stage (the terminal,
notes written by ``analyze``, the reports). Reading sizes from the command line is
``cli.common.Size``'s job.
"""

from __future__ import annotations


def human_size(n: float) -> str:
    """A byte count: ``512 B``, ``1.5 KiB``, ``2.0 MiB`` (at most GiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def mb_per_hour(bytes_per_sec: float) -> str:
    """A growth rate in MB an hour, signed, with thousands separators: ``+3,774.9`` (no unit)."""
    return f"{bytes_per_sec * 3600 / 1e6:+,.1f}"
