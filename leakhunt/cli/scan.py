"""``leakhunt scan``: sample the memory of every process (or a chosen set) over a window, judge each
trend, rank the suspects and say which ``leakhunt investigate PID`` to run next.

Sampling needs no root: /proc/PID/status is readable by everyone on a default /proc. Only
``--investigate-top`` (eBPF probes) needs root, and it is checked before the scan starts.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leakhunt import procfs
from leakhunt.analyze.trend import MIN_GROWTH_BYTES, SUSPECT_VERDICTS, suspects
from leakhunt.app.investigate import Progress as SessionProgress
from leakhunt.app.scan import ScanOptions, investigate_suspects, run_scan, sweep_count
from leakhunt.cli.common import SafeConsole, Seconds, Size, announce
from leakhunt.errors import ProbeFailed, TargetError, UsageError
from leakhunt.model import ProcessTrend, ScanResult
from leakhunt.outputfile import check_output_dir
from leakhunt.probe.choose import choose_backend
from leakhunt.probe.tools import require_root
from leakhunt.report import FORMATS, formats_for, parse_formats, write_reports
from leakhunt.report import redact as redact_mod
from leakhunt.report.jsonio import dump
from leakhunt.sample import SweepStats, lookup_uid
from leakhunt.units import mb_per_hour

SCAN_FORMATS = formats_for(ScanResult)


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):,.1f}"


def verdict_text(p: ProcessTrend) -> str:
    """The verdict, with the address-space flag when raised."""
    return p.verdict + (" +VSZ" if p.evidence.address_space_growth else "")


def print_table(console: Console, scan: ScanResult, top: int) -> None:
    """The ranked table: suspects first, then the rest up to ``top`` rows."""
    wide = console.width >= 120
    table = Table(
        title=f"leakhunt scan: top {min(top, len(scan.processes))} of {len(scan.processes)} processes",
        caption="growth = Theil-Sen slope of anon+swap; sizes in MiB",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("PID", justify="right", no_wrap=True)
    table.add_column("name", overflow="ellipsis", min_width=6, max_width=20, no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("MB/h", justify="right", no_wrap=True)
    table.add_column("R²", justify="right", no_wrap=True)
    for col in ("anon", "RSS", "VSZ", "swap"):
        table.add_column(col, justify="right", no_wrap=True)
    if wide:
        table.add_column("next", no_wrap=True)
    styles = {"leak-suspect": "bold red", "growing": "yellow", "sawtooth": "cyan", "plateau": "blue"}
    for i, p in enumerate(scan.processes[:top], 1):
        last = p.samples[-1]
        style = styles.get(p.verdict)
        row = [
            str(i),
            str(p.key.pid),
            escape(p.name),  # the target names itself: text, never markup
            f"[{style}]{verdict_text(p)}[/]" if style else verdict_text(p),
            mb_per_hour(p.evidence.slope_bytes_per_sec),
            f"{p.evidence.r2:.2f}",
            _mib(last.anon),
            _mib(last.rss),
            _mib(last.vms),
            _mib(last.swap),
        ]
        if wide:
            row.append(f"leakhunt investigate {p.key.pid}" if p.verdict in SUSPECT_VERDICTS else "")
        table.add_row(*row)
    console.print(table)


def summary_lines(scan: ScanResult) -> list[str]:
    """What the user must know besides the table: coverage, unreadable processes, what to do."""
    cut = ""
    if scan.run.stop_reason != "duration":
        planned = scan.planned_duration_s
        cut = f" ({scan.run.stop_reason}" + (f"; {planned:g} s planned)" if planned is not None else ")")
    lines = [
        f"sampled {scan.sampled} processes for {scan.run.duration_s:.0f} s every {scan.interval_s:g} s{cut}"
    ]
    if scan.unreadable:
        why = ", ".join(f"{reason}: {n}" for reason, n in scan.unreadable_reasons)
        hint = " (run as root to include them)" if os.geteuid() != 0 else ""
        lines.append(f"could not read {scan.unreadable} processes ({why}){hint}")
    else:
        lines.append("could not read 0 processes")
    km = scan.kernel_memory
    if km is not None and km.verdict in SUSPECT_VERDICTS:
        caches = ", ".join(f"{c.name} {mb_per_hour(c.slope_bytes_per_sec)} MB/h" for c in km.caches[:3])
        lines.append(
            f"the kernel's unreclaimable slab (SUnreclaim) is {km.verdict}: "
            f"{mb_per_hour(km.evidence.slope_bytes_per_sec)} MB/h"
            + (f" (caches: {caches})" if caches else "")
            + "; next step, as root: leakhunt investigate --kernel"
        )
    found = suspects(scan)
    if found:
        lines.append(f"{len(found)} suspect(s); next step, as root:")
        lines += [
            f"  leakhunt investigate {p.key.pid}    # {p.name}: {p.verdict}, "
            f"{mb_per_hour(p.evidence.slope_bytes_per_sec)} MB/h"
            for p in found[:5]
        ]
    else:
        lines.append("no process grew steadily enough to be a suspect")
    return lines


@click.command(
    "scan",
    epilog="""\b
Examples:
  leakhunt scan                                  every process, 60 s, table + reports in ./reports
  leakhunt scan --duration 300 --name 'java|node' --min-rss 50M
  leakhunt scan --pid 1234 --pid 5678 --json > scan.json
  sudo leakhunt scan --investigate-top 2         then probe the two worst for their stacks
""",
)
@click.option(
    "--duration",
    type=Seconds(min=0.0),
    default=60.0,
    show_default=True,
    help="Seconds to sample for (a leak needs time to show; minutes are better than seconds).",
)
@click.option(
    "--interval",
    type=Seconds(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between two samples of every process.",
)
@click.option(
    "--pid",
    "pids",
    type=int,
    multiple=True,
    metavar="PID",
    help="Sample only this process (repeat for several). Default: every process.",
)
@click.option(
    "--name",
    "name_pattern",
    metavar="REGEX",
    help="Only processes whose name or command line matches this regular expression.",
)
@click.option("--user", metavar="USER", help="Only processes of this user (name or uid).")
@click.option(
    "--min-rss",
    type=Size(),
    default="0",
    show_default=True,
    metavar="SIZE",
    help="Leave out processes whose RSS is below SIZE at the end (e.g. 50M).",
)
@click.option(
    "--min-growth",
    type=Size(),
    default="1M",
    show_default=True,
    metavar="SIZE",
    help="Growth over the window below SIZE is not a leak-suspect (noise), unless it is a clean, "
    "steady trend at --min-rate or more (then: growing, with the scan length that would confirm it).",
)
@click.option(
    "--min-rate",
    type=Size(),
    default="10M",
    show_default=True,
    metavar="SIZE",
    help="A clean, significant linear trend at SIZE an hour or more is a suspect even before it "
    "grew --min-growth (a slow leak in a short scan). 0 turns this off.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows in the table (the JSON and reports hold every process sampled).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the results as JSON on stdout (progress and table go to stderr). "
    "Reports are then written only if --output-dir is given.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the reports.  [default: ./reports]",
)
@click.option(
    "--format",
    "formats",
    default=",".join(SCAN_FORMATS),
    show_default=True,
    help=f"Report formats, comma-separated: {', '.join(SCAN_FORMATS)}.",
)
@click.option("--no-redact", is_flag=True, help="Keep secrets found in command lines in the output.")
@click.option(
    "--investigate-top",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="After the scan, investigate the N top suspects with eBPF (needs root) and write one "
    "combined report.",
)
@click.option(
    "--investigate-duration",
    type=Seconds(min=1.0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Seconds of probing for each investigated suspect.",
)
@click.option(
    "--investigate-mode",
    type=click.Choice(["alloc", "growth"]),
    default="alloc",
    show_default=True,
    help="alloc: probe each suspect's allocator calls (exact, microseconds per call). growth: first "
    "count its first-touch page faults per stack (near free) for half of --investigate-duration, "
    "then probe its allocator calls for the other half; the report holds both and says which "
    "stacks growth mode pointed at and whether exact probing confirmed them.",
)
def scan(
    *,
    duration: float,
    interval: float,
    pids: Sequence[int],
    name_pattern: str | None,
    user: str | None,
    min_rss: int,
    min_growth: int,
    min_rate: int,
    top: int,
    as_json: bool,
    output_dir: Path | None,
    formats: str,
    no_redact: bool,
    investigate_top: int,
    investigate_duration: float,
    investigate_mode: str,
) -> None:
    """Find the processes whose memory keeps growing.

    Samples the memory of every process you may read (all of them on a default /proc, no root
    needed) every INTERVAL for DURATION seconds, judges each trend and ranks the suspects:

    \b
      leak-suspect  sustained growth that is not flattening
      growing       grew, but too short or too noisy a trend to say more
      sawtooth      rises and falls (judged on its troughs)
      plateau       grew, then stopped (a cache that filled)
      stable        grew less than --min-growth, and not steadily at --min-rate an hour

    "+VSZ" marks address-space growth (VSZ grew far more than RSS): a hint, not a leak by itself.

    The signal judged is anonymous resident memory plus swap. Each process is keyed by its pid and
    start time, so a reused pid never merges two processes.
    """
    min_rss_bytes = min_rss
    min_growth_bytes = min_growth or MIN_GROWTH_BYTES
    min_rate_per_hour = min_rate
    fmts = parse_formats(formats)
    if any(f not in SCAN_FORMATS for f in fmts):
        stackful = "/".join(f for f in FORMATS if f not in SCAN_FORMATS)
        raise UsageError(
            f"a scan has no call stacks: {stackful} do not apply",
            hint=f"use --format {','.join(SCAN_FORMATS)}",
        )
    if output_dir is not None or not as_json:
        check_output_dir(output_dir or Path("reports"))  # before sampling: the results would be lost
    name_re = None
    if name_pattern is not None:
        try:
            name_re = re.compile(name_pattern)
        except re.error as err:
            raise UsageError(f"--name: bad regular expression {name_pattern!r}: {err}") from None
    uid = None
    if user is not None:
        uid = lookup_uid(user)
        if uid is None:
            raise UsageError(f"--user: no such user {user!r}")
    missing = [p for p in pids if not procfs.exists(p)]
    if pids and len(missing) == len(pids):
        raise TargetError(f"no such process: {', '.join(map(str, missing))}", hint="check the pids with ps")
    backend = None
    if investigate_top:
        # Before a long scan, not after it: root, and a probe tool that works here.
        require_root()
        backend = choose_backend("auto")
        if investigate_mode == "growth":
            choose_backend("auto", mode="growth")  # bpftrace is there: fail now, not after the scan

    console = SafeConsole(stderr=True)
    for pid in missing:
        console.print(f"pid {pid}: no such process", highlight=False, markup=False)
    options = ScanOptions(
        duration=duration,
        interval=interval,
        pids=tuple(pids),
        name_re=name_re,
        uid=uid,
        min_rss=min_rss_bytes,
        min_growth=min_growth_bytes,
        min_rate=min_rate_per_hour,
    )
    with Progress(
        TextColumn("[bold]sampling[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sweeps"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("scan", total=sweep_count(duration, interval), info="")

        def on_sweep(elapsed: float, st: SweepStats) -> None:
            bad = sum(n for _, n in st.unreadable)
            info = f"{st.sampled} processes, sweep {st.wall_s * 1000:.1f} ms" + (
                f", {bad} unreadable" if bad else ""
            )
            progress.update(task, advance=1, info=info)

        result = run_scan(options, on_sweep)

    if backend is not None:
        result = replace(
            result,
            investigations=investigate_suspects(
                _Observer(console),
                result,
                investigate_top,
                investigate_duration,
                backend,
                mode=investigate_mode,
            ),
        )

    # The results go to stdout, unless stdout carries the JSON: then everything for people is on stderr.
    out = console if as_json else SafeConsole()
    print_table(out, result, top)
    for line in summary_lines(result):
        out.print(line, highlight=False, markup=False)
    if as_json:
        dump(result if no_redact else redact_mod.redact(result), sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
    if output_dir is not None or not as_json:
        folder = output_dir or Path("reports")
        paths = write_reports(result, folder, fmts, redact=not no_redact)
        announce(paths, folder, lambda line: console.print(line, highlight=False, markup=False))
    if backend is not None and suspects(result) and not result.investigations:
        # The scan's results are saved; still, what was asked for (stacks) did not happen.
        raise ProbeFailed(
            "no suspect could be investigated (see the reasons above)",
            hint="run `leakhunt doctor`, or investigate one pid with `leakhunt investigate PID`",
        )


class _Observer:
    """What ``investigate_suspects`` says, on the terminal: a progress bar per suspect, notes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def note(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)

    @contextmanager
    def investigating(
        self, pid: int, name: str, mode: str, duration: float
    ) -> Iterator[Callable[[SessionProgress], None]]:
        with Progress(
            TextColumn(f"[bold]investigating[/] pid {pid} {escape(name)}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"investigate ({mode})", total=duration, info="starting")

            def show(state: SessionProgress) -> None:
                top = f", rank 1: {state.top.stack.top}" if state.top is not None else ""
                info = f"{state.status}, {state.snapshots} snapshots{top}"
                progress.update(task, completed=min(state.elapsed, duration), info=info)

            yield show
