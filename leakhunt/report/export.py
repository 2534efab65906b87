"""The call stacks that the folded and pprof exports write, taken from any document that has them.

An investigation gives one stack per finding. A trace has no call stacks (memleak -t prints none),
so each traced process becomes a two-frame stack ``<comm> (pid N)`` -> ``<size>-byte blocks``: a
flame graph of a trace then shows which process and which allocation sizes stay unfreed.

Values per stack:

- ``outstanding_bytes`` / ``count``: what the stack held when last seen (the finding's numbers);
- ``growth_bytes``: bytes gained over the run, the last value seen minus the value at the first
  snapshot (0 if the stack was not there yet), so a cache that filled before the probes attached
  shows no growth and a leak shows everything it added while leakhunt watched. Negative when the
  stack shrank; exports that need non-negative values drop those.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from leakhunt.errors import UsageError
from leakhunt.model import Finding, Frame, Investigation, TraceResult
from leakhunt.report.jsonio import Document


@dataclass(frozen=True)
class ExportStack:
    """One stack and its values, frames innermost first (as in ``model.Stack``)."""

    frames: tuple[Frame, ...]
    outstanding_bytes: int
    count: int | None
    growth_bytes: int
    growth_bytes_per_sec: float
    verdict: str = ""
    rank: int | None = None


def _growth(finding: Finding, t0: float | None) -> int:
    if not finding.series:
        return 0
    first = finding.series[0]
    # A stack already there at the first snapshot grew from its first value; one that appeared later
    # grew from nothing.
    base = first.outstanding_bytes if t0 is None or first.t <= t0 + 1e-9 else 0
    return finding.series[-1].outstanding_bytes - base


def _investigation_stacks(inv: Investigation) -> list[ExportStack]:
    t0 = inv.snapshots[0].t if inv.snapshots else None
    return [
        ExportStack(
            frames=f.stack.frames,
            outstanding_bytes=f.outstanding_bytes,
            count=f.count,
            growth_bytes=_growth(f, t0),
            growth_bytes_per_sec=f.growth_bytes_per_sec,
            verdict=f.verdict,
            rank=f.rank,
        )
        for f in inv.findings
    ]


def _trace_stacks(tr: TraceResult) -> list[ExportStack]:
    out: list[ExportStack] = []
    duration = tr.run.duration_s if tr.run.duration_s > 0 else 0.0
    for proc in tr.processes:
        by_size: dict[int, int] = defaultdict(int)
        for u in proc.unfreed:
            by_size[u.size] += 1
        root = Frame(f"{proc.comm} (pid {proc.pid})")
        for size, n in sorted(by_size.items()):
            held = size * n
            out.append(
                ExportStack(
                    frames=(Frame(f"{size}-byte blocks"), root),
                    outstanding_bytes=held,
                    count=n,
                    # Every unfreed block of a trace was allocated while it ran.
                    growth_bytes=held,
                    growth_bytes_per_sec=held / duration if duration else 0.0,
                    verdict="unfreed",
                )
            )
    return out


def export_stacks(doc: Document) -> tuple[ExportStack, ...]:
    """The stacks of an investigation (one per finding, in rank order) or of a trace (see above).

    A scan has no call stacks: UsageError with a hint.
    """
    if isinstance(doc, Investigation):
        return tuple(_investigation_stacks(doc))
    if isinstance(doc, TraceResult):
        return tuple(_trace_stacks(doc))
    raise UsageError(
        "a scan report has no call stacks to export",
        hint="run `leakhunt investigate PID` on a suspect, then export that report",
    )
