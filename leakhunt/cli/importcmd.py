"""``leakhunt import FILE...``: captured memleak/bpftrace output -> the reports of a live run.

The options and the terminal summary; reading a log into a result is ``app.importing.import_file``.
"""

from __future__ import annotations

import gc
from pathlib import Path

import click
from rich.console import Console

from leakhunt.app.importing import import_file
from leakhunt.cli.common import (
    Milliseconds,
    SafeConsole,
    Size,
    exit_status,
    output_options,
    write_and_announce,
)
from leakhunt.cli.tracesummary import print_quality_notes, print_trace_summary
from leakhunt.errors import EXIT_OK, UsageError
from leakhunt.model import Investigation, TraceResult
from leakhunt.parse.detect import KINDS


@click.command(
    "import",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--kind",
    type=click.Choice(["auto", *KINDS]),
    default="auto",
    show_default=True,
    help="What the files hold. auto looks at the first lines and says what it found. memleak = "
    "periodic stack blocks (BCC with or without -a, --combined-only, libbpf-tools); memleak-trace = "
    "memleak -t tuples; bpftrace / bpftrace-json = bpftrace maps of leakhunt's probe (text / -f json); "
    "bpftrace-trace = `leakhunt trace --save-raw` output of the bpftrace backend.",
)
@click.option(
    "--min-growth",
    type=Size(),
    default="4096",
    show_default=True,
    metavar="SIZE",
    help="Stack output only: a stack must grow by at least SIZE (4096, 4k, 1.5k) over the log to be "
    "called a leak.",
)
@click.option(
    "--older-than",
    "older_than_ms",
    type=Milliseconds(),
    default=0,
    show_default=True,
    metavar="MS",
    help="Trace logs only: list only blocks allocated at least MS milliseconds before the log ends.",
)
@output_options
def import_(
    *,
    files: tuple[str, ...],
    kind: str,
    min_growth: int,
    older_than_ms: int,
    output_dir: Path,
    formats: tuple[str, ...],
    no_redact: bool,
) -> int:
    """Turn captured memleak or bpftrace output into leakhunt's reports.

    Each FILE (`-` reads standard input) is read as one log and gives its own reports: periodic
    stack output gives snapshots and findings ranked leak-first, as `investigate` does; a per-call
    trace gives the blocks never freed, as `trace` does. Lines that cannot be parsed are counted
    and shown in the report's data-quality section.

    \b
    Examples:
      leakhunt import memleak.log                       # pasted from a ticket
      sudo memleak-bpfcc -p 1234 -a 5 | tee mem.log; leakhunt import mem.log
      leakhunt import --kind memleak-trace - < trace.txt

    Ctrl-C (or SIGTERM) stops the reading: the reports cover what was read, and no further file
    is read; a second Ctrl-C is ignored while they are written.

    Exit status: 0 when the reports were written, 2 when a file cannot be read or holds nothing
    leakhunt understands, 4 when a log holds one snapshot only or its snapshots hold no allocation
    at all, or no leak but a stack that grew without a verdict (seen in two snapshots only;
    reports written: they prove nothing), 130 when interrupted.
    """
    out = SafeConsole(highlight=False, soft_wrap=True)
    # the modules loaded so far live as long as the process: out of the cyclic collector's sight,
    # its one full collection during an import (tens of thousands of blocks made) takes 0.03 s less
    gc.freeze()
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    status = EXIT_OK
    for name in files:
        doc = import_file(name, kind=kind, min_growth=min_growth, older_than_ms=older_than_ms, say=out.print)
        if isinstance(doc, TraceResult):
            print_trace_summary(out, doc)
        else:
            _investigation_summary(out, doc)
        write_and_announce(doc, output_dir, formats, redact=not no_redact, echo=out.print)
        status = max(status, exit_status(doc))
        if doc.run.stop_reason == "interrupted":
            out.print(f"interrupted: the reports cover what was read of {name}", markup=False)
            break
    return status


def _investigation_summary(out: Console, inv: Investigation) -> None:
    leaks = [f for f in inv.findings if f.verdict == "leak"]
    blind = inv.blind_reason()
    unknown = [f for f in inv.findings if f.too_few_snapshots]
    if blind is not None:
        out.print(f"inconclusive, not a clean result: {blind}", markup=False)
    elif len(inv.snapshots) == 1:
        out.print(
            "inconclusive, not a clean result: one snapshot cannot show growth (capture several intervals)",
            markup=False,
        )
    elif unknown and not any(f.verdict == "leak" for f in inv.findings):
        out.print(
            f"inconclusive, not a clean result: {len(unknown)} stack(s) grew but could not be judged "
            f"({unknown[0].reason})",
            markup=False,
        )
    out.print(
        f"{len(inv.snapshots)} snapshots over {inv.run.duration_s:.0f} s, {len(inv.findings)} stacks, "
        f"{len(leaks)} judged leaking",
        highlight=False,
    )
    for f in inv.findings[:5]:
        top = " <- ".join(fr.display() for fr in f.stack.frames[:3]) or "[no stack]"
        out.print(
            f"  #{f.rank} {f.verdict:9} {f.outstanding_bytes:>12,} B  "
            f"{f.growth_bytes_per_sec:>10,.0f} B/s  {top}",
            markup=False,
        )
    print_quality_notes(out, inv.quality)
