"""What the terminal shows after a trace, live (``trace``) or imported (``import``): kept apart from
``cli.trace`` so that ``import`` does not load the probes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from leakhunt.analyze.trace import group_columns, unfreed_columns
from leakhunt.model import DataQuality, TraceResult
from leakhunt.units import human_size

SUMMARY_ROWS = 8


def print_trace_summary(out: Console, result: TraceResult) -> None:
    """What the terminal shows after a trace (live or imported)."""
    t = result.target
    out.print(
        f"[bold]{t.comm}[/bold] (pid {t.pid}): {result.backend.name}, {result.run.duration_s:.1f} s traced, "
        f"stopped: {result.run.stop_reason}",
        highlight=False,
    )
    if not result.processes:
        out.print("no allocation was traced")
    for proc in result.processes:
        out.print(
            f"pid {proc.pid} ({proc.comm}): {proc.alloc_count:,} allocations, {proc.free_count:,} frees, "
            f"{proc.unknown_frees:,} frees of blocks from before the trace; "
            f"[bold]{proc.unfreed_count:,} never freed, {human_size(proc.unfreed_bytes)}[/bold]",
            highlight=False,
        )
        if not proc.unfreed:
            continue
        columns = unfreed_columns(proc.unfreed)
        for title, groups, label in (
            ("by size", group_columns(*columns, by="size"), "size"),
            ("by thread", group_columns(*columns, by="tid"), "tid"),
        ):
            table = Table(title=f"never freed, {title}", show_header=True, header_style="bold")
            table.add_column(label, justify="right")
            table.add_column("blocks", justify="right")
            table.add_column("bytes", justify="right")
            table.add_column("oldest age", justify="right")
            for g in groups[:SUMMARY_ROWS]:
                table.add_row(
                    human_size(g.key) if label == "size" else str(g.key),
                    f"{g.count:,}",
                    human_size(g.bytes),
                    f"{result.end_time - g.oldest:.2f} s",
                )
            if len(groups) > SUMMARY_ROWS:
                table.add_row("...", f"{sum(g.count for g in groups[SUMMARY_ROWS:]):,}", "", "")
            out.print(table)
    if result.rate:
        peak = max(result.rate, key=lambda r: r[1])
        out.print(
            f"allocation rate: peak {peak[1]:,} allocations ({human_size(peak[2])}) in the bucket at "
            f"{peak[0]:.1f} s",
            highlight=False,
        )
    print_quality_notes(out, result.quality)


def print_quality_notes(out: Console, q: DataQuality) -> None:
    """The data-quality lines of a summary: unparsed lines, lost events, the notes."""
    if q.unparsed_lines:
        out.print(f"note: {q.unparsed_lines} line(s) could not be parsed", markup=False)
    if q.lost_events:
        out.print(f"note: the tracer lost {q.lost_events} event(s)", markup=False)
    for note in q.notes:
        out.print(f"note: {note}", markup=False)
