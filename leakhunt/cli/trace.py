"""``leakhunt trace PID|-- CMD``: every allocation and free, matched by address; what was never freed.

Runs BCC's ``memleak -t`` or leakhunt's bpftrace trace script for --duration seconds, matches
frees to allocations per process (realloc = free + allocation) and reports the blocks still
allocated at the end: grouped by size and by thread, with their age, and the allocation rate.
"""

from __future__ import annotations

from pathlib import Path

import click

from leakhunt.app.trace import TraceOptions, run_trace
from leakhunt.cli.common import (
    Milliseconds,
    SafeConsole,
    Seconds,
    exit_status,
    output_options,
    write_despite_interrupt,
)
from leakhunt.cli.tracesummary import print_trace_summary
from leakhunt.errors import UsageError
from leakhunt.outputfile import check_output_dir
from leakhunt.probe.tools import require_root

SUMMARY_ROWS = 8


@click.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True})
@click.option(
    "--duration",
    type=Seconds(min=0.5),
    default=10.0,
    show_default=True,
    help="Seconds to trace (tracing also ends when the target exits). Every call is traced: "
    "expect the target to slow down while it runs.",
)
@click.option(
    "--older-than",
    "older_than_ms",
    type=Milliseconds(),
    default=0,
    show_default=True,
    metavar="MS",
    help="List only blocks still allocated MS milliseconds after they were allocated, at the end "
    "(like memleak -o): hides short-lived allocations that were simply not freed yet.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "bpftrace", "bcc"]),
    default="auto",
    show_default=True,
    help="Tracer. bcc = memleak -t (BCC's Python tool); bpftrace = leakhunt's script printing one "
    "line per call. auto picks bcc (its probes fire for the target only), else a bpftrace that "
    "filters by pid (>= 0.20); a bpftrace older than that slows every process on the host and must be "
    "asked for by name.",
)
@click.option(
    "--save-raw",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also save the tracer's raw output to FILE (mode 0600); `leakhunt import FILE` reads it back "
    "to the same result.",
)
@click.option(
    "--bucket",
    type=Seconds(min=0.01),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Width of the allocation-rate buckets in the report.",
)
@output_options
@click.argument("target", nargs=-1, required=True, type=click.UNPROCESSED, metavar="PID | -- COMMAND...")
def trace(
    *,
    target: tuple[str, ...],
    duration: float,
    older_than_ms: int,
    backend: str,
    save_raw: Path | None,
    bucket: float,
    output_dir: Path,
    formats: tuple[str, ...],
    no_redact: bool,
) -> int:
    """Trace every allocation and free of PID (or of COMMAND, started here) and list what was
    never freed.

    Frees are matched to allocations by address within each process (threads share one), realloc
    counts as a free plus an allocation, and frees of blocks allocated before the trace started are
    counted apart. At the end the blocks still allocated are listed, grouped by size and by thread,
    with their age, together with the allocation rate over time. Needs root.

    \b
    Examples:
      sudo leakhunt trace 1234 --duration 5
      sudo leakhunt trace --older-than 500 --save-raw trace.log -- ./myprog --flag
      leakhunt import trace.log            # the same report again, from the saved output

    Exit status: 0 when the report was written, 2 for bad input or a host that cannot trace,
    3 when the tracer failed (when it died midway, the partial report is still written),
    130 when interrupted (a partial report is still written).
    """
    require_root()  # the first thing a user without root must hear
    check_output_dir(output_dir)  # before tracing: a report that cannot be written loses the run
    pid: int | None = None
    command: tuple[str, ...] | None = None
    if len(target) == 1 and target[0].isdigit():
        pid = int(target[0])
    elif target and target[0].startswith("-"):
        raise UsageError(f"unknown option {target[0]}", hint="put the command after `--`")
    else:
        command = target
    err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)
    options = TraceOptions(
        duration=duration, older_than_ms=older_than_ms, backend=backend, bucket_s=bucket, raw_path=save_raw
    )
    result = run_trace(pid, command=command, options=options, say=lambda m: err.print(f"leakhunt: {m}"))
    out = SafeConsole(highlight=False, soft_wrap=True)
    print_trace_summary(out, result)
    if save_raw is not None:
        out.print(f"raw trace: {save_raw}", markup=False)
    write_despite_interrupt(result, output_dir, formats, redact=not no_redact, echo=out.print)
    return exit_status(result)
