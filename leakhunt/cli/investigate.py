"""``leakhunt investigate PID`` and ``leakhunt run -- CMD``: which call stacks keep growing?

Both attach a probe (bpftrace or BCC's memleak), snapshot outstanding allocations per call stack
every interval, rank the stacks leak-first and write the reports. ``run`` starts the command held
at a gate and lets it exec only once the probes are attached, so no allocation is missed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leakhunt.app import investigate as session
from leakhunt.app.investigate import LIVE_TOP
from leakhunt.cli.common import (
    Milliseconds,
    SafeConsole,
    Seconds,
    Size,
    exit_status,
    output_options,
    write_despite_interrupt,
)
from leakhunt.cli.liveview import LiveView
from leakhunt.errors import UsageError
from leakhunt.model import Investigation
from leakhunt.outputfile import check_output_dir
from leakhunt.probe import growth, tools
from leakhunt.probe.backend import ProbeMode
from leakhunt.probe.choose import choose_backend
from leakhunt.report.redact import redact_argv
from leakhunt.units import human_size


def probe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The probing options shared by ``investigate`` and ``run``."""
    options = [
        click.option(
            "--duration",
            type=Seconds(min=0.5),
            default=60.0,
            show_default=True,
            help="Seconds to probe (the run also ends when the target exits).",
        ),
        click.option(
            "--interval",
            type=Seconds(min=0.1),
            default=5.0,
            show_default=True,
            help="Seconds between snapshots of outstanding allocations (BCC rounds to whole seconds).",
        ),
        click.option(
            "--backend",
            type=click.Choice(["auto", "native", "bpftrace", "bcc"]),
            default="auto",
            show_default=True,
            help="Probe tool. native: leakhunt's own BPF probe (BCC; the cheapest). auto picks native, "
            "else BCC's memleak, else a bpftrace that filters by pid, and says why; it never picks a "
            "bpftrace older than 0.20, which slows every process on the host (ask for it by name).",
        ),
        click.option(
            "--min-size",
            type=Size(),
            metavar="SIZE",
            help="Ignore allocations smaller than SIZE bytes (4096, 4k, 1.5k, 2M) (memleak -z).",
        ),
        click.option(
            "--max-size",
            type=Size(),
            metavar="SIZE",
            help="Ignore allocations larger than SIZE bytes (memleak -Z).",
        ),
        click.option(
            "--sample-rate",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Record about 1 in N allocations: cheaper on allocation-heavy targets (memleak -s).",
        ),
        click.option(
            "--sample-bytes",
            type=Size(),
            metavar="SIZE",
            default=None,
            help="native backend: sample about one allocation per SIZE bytes (Poisson by bytes, as "
            "tcmalloc does, e.g. 512k); outstanding bytes stay unbiased estimates and the report "
            "states their uncertainty. Default: every allocation.",
        ),
        click.option(
            "--unwind",
            type=click.Choice(["dwarf", "fp"]),
            default="dwarf",
            show_default=True,
            help="native backend: how call stacks are walked. dwarf: a copy of the top of the stack, "
            "unwound by leakhunt with each object's call-frame information (.eh_frame), so code "
            "built without frame pointers (gcc -O2, Debian's libc) keeps its callers; fp: the "
            "kernel's frame-pointer walk (cheaper; loses callers of code without frame pointers).",
        ),
        click.option(
            "--older-than",
            "older_than_ms",
            type=Milliseconds(),
            default=None,
            metavar="MS",
            help="Count only allocations older than MS milliseconds (500, 500ms, 2s) (memleak -o; its "
            "default is 500).",
        ),
        click.option(
            "--top",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Stacks shown in the terminal summary (reports keep all; memleak is asked for more).",
        ),
        click.option(
            "--obj",
            default=None,
            metavar="LIB|PATH",
            help="Probe the allocator in this object instead of the target's libc: a library name the "
            "target maps (jemalloc) or a path (a static binary) (memleak -O).",
        ),
        click.option(
            "--map-keys",
            type=click.IntRange(min=1024),
            default=131072,
            show_default=True,
            help="bpftrace and native backends: live allocations tracked at once; a full map is reported.",
        ),
        click.option(
            "--mode",
            type=click.Choice(["alloc", "growth", "kernel"]),
            default="alloc",
            show_default=True,
            help="What to measure. alloc: the target's allocator calls, outstanding bytes per stack "
            "(exact, costs microseconds per call). growth: where the target first touches new pages "
            "(page faults), pages added per stack; near free, but it shows memory growth, not memory "
            "never freed. kernel: the kernel's own allocations (slab, percpu) per kernel stack.",
        ),
        click.option(
            "--kernel",
            is_flag=True,
            help="Same as --mode kernel: trace kernel allocations (every task, or the one given).",
        ),
        click.option(
            "--kernel-pages",
            is_flag=True,
            help="Kernel mode: trace page allocations too (they include every page fault and page "
            "cache fill; BCC's memleak always traces them).",
        ),
        click.option(
            "--min-growth",
            type=Size(),
            metavar="SIZE",
            default="4096",
            show_default=True,
            help="A stack must grow by at least this much to be called a leak.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _options(kw: dict[str, Any]) -> session.ProbeOptions:
    mode: ProbeMode = "kernel" if kw["kernel"] else kw["mode"]
    if kw["kernel"] and kw["mode"] not in ("alloc", "kernel"):
        raise UsageError(f"--kernel contradicts --mode {kw['mode']}")
    if kw["kernel_pages"] and mode != "kernel":
        raise UsageError("--kernel-pages applies to kernel mode only", hint="add --kernel")
    opts = session.ProbeOptions(
        mode=mode,
        kernel_pages=kw["kernel_pages"],
        duration=kw["duration"],
        interval=kw["interval"],
        backend=kw["backend"],
        min_size=kw["min_size"],
        max_size=kw["max_size"],
        sample_rate=kw["sample_rate"],
        older_than_ms=kw["older_than_ms"],
        top=kw["top"],
        obj=kw["obj"],
        map_keys=kw["map_keys"],
        min_growth_bytes=kw["min_growth"],
        sample_bytes=kw["sample_bytes"],
        unwind=kw["unwind"],
    )
    if mode == "growth":
        growth.check_options(opts)  # before a backend is announced
    return opts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pid", type=int, required=False)
@click.option(
    "--pid",
    "pid_option",
    type=int,
    default=None,
    metavar="PID",
    help="Kernel mode: only the kernel allocations this process makes (same as the PID argument).",
)
@probe_options
@output_options
def investigate(
    pid: int | None,
    pid_option: int | None,
    output_dir: Path,
    formats: tuple[str, ...],
    no_redact: bool,
    **kw: Any,
) -> int:
    """Find the call stacks that leak in the running process PID (or in the kernel).

    Attaches to PID (needs root), takes a snapshot of outstanding allocations per call stack every
    --interval seconds for --duration seconds, ranks the stacks whose outstanding bytes keep growing
    first (a big cache that stopped growing is not a leak), prints a summary and writes reports.

    --mode growth counts the pages PID touches for the first time per stack instead: nearly free
    on a busy process, it says where memory grows, not what is never freed (follow up in alloc
    mode). --kernel traces the kernel's own allocations per kernel stack, of every task (the whole
    host competes in the ranking) or of PID only.

    \b
    Examples:
      sudo leakhunt investigate 1234
      sudo leakhunt investigate 1234 --duration 120 --interval 10 --format html
      sudo leakhunt investigate 1234 --backend bcc --min-size 1k
      sudo leakhunt investigate 1234 --mode growth --duration 300
      sudo leakhunt investigate --kernel --duration 60
      sudo leakhunt investigate --kernel --pid 1234

    Exit status: 0 when the report was written, 2 for bad input or a host that cannot probe,
    3 when the probe failed (if it had printed anything, a partial report is still written),
    4 when the result proves nothing (report written): no snapshot or only one was taken, the
    probes saw nothing, or no leak was found but far less than the process's memory growth was
    seen (an allocator not hooked) or a stack grew in two snapshots only (too few to judge),
    130 when interrupted (a partial report is still written).
    """
    opts = _options(kw)
    tools.require_root()  # the first thing a user without root must hear
    check_output_dir(output_dir)  # before probing: a report that cannot be written loses the run
    if pid is not None and pid_option is not None and pid != pid_option:
        raise UsageError(f"two different pids given: {pid} and --pid {pid_option}")
    pid = pid if pid is not None else pid_option
    if pid is None and opts.mode != "kernel":
        raise UsageError("no PID given", hint="leakhunt investigate PID (or --kernel for the kernel)")
    reports = _Reports(output_dir, formats, no_redact)
    inv = _probe(opts, pid=pid, redact=not no_redact, deliver=reports)
    _finish(inv, opts, reports)
    return exit_status(inv)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True})
@probe_options
@output_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    command: tuple[str, ...], output_dir: Path, formats: tuple[str, ...], no_redact: bool, **kw: Any
) -> int:
    """Start COMMAND under the probe and find the call stacks that leak.

    The command is held before it executes until the probes are attached, so no allocation is
    missed. Probing ends when the command exits or after --duration seconds (then the command is
    stopped with SIGTERM). Put the command after `--`.

    \b
    Examples:
      sudo leakhunt run -- ./myserver --port 8080
      sudo leakhunt run --duration 30 --backend bcc -- python3 app.py

    Exit status: the command's own when it ended by itself (128+N when killed by signal N); 0 when
    it was still running at the end of --duration and leakhunt stopped it; 2/3 for leakhunt's
    errors; 4 when the command succeeded (or was stopped) but the result proves nothing (one
    snapshot or none, nothing seen, or growth too short to judge: see investigate),
    130 when interrupted (a partial report is still written).
    """
    opts = _options(kw)
    tools.require_root()  # the first thing a user without root must hear
    check_output_dir(output_dir)  # before probing: a report that cannot be written loses the run
    reports = _Reports(output_dir, formats, no_redact)
    inv = _probe(opts, command=command, redact=not no_redact, deliver=reports)
    _finish(inv, opts, reports)
    return exit_status(inv)


# --- running with a progress display -------------------------------------------------------------


def _probe(
    opts: session.ProbeOptions,
    *,
    pid: int | None = None,
    command: tuple[str, ...] | None = None,
    redact: bool = True,
    deliver: Callable[[Investigation], None] | None = None,
) -> Investigation:
    err = SafeConsole(stderr=True, highlight=False)
    if command is not None and not command:
        raise UsageError("no command given", hint="put the command after `--`")
    choice_note: list[str] = []
    state = {"attached": False, "allocator": False}
    bar: Progress | None = None
    task = None
    # the top stacks, live: a table on a terminal, else a line per snapshot on stdout
    view = LiveView(top=min(opts.top, LIVE_TOP))
    if err.is_terminal and not view.terminal:
        bar = Progress(
            TextColumn("[bold]{task.fields[status]}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
            TextColumn("snapshots: {task.fields[snaps]}"),
            TextColumn("{task.fields[top]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = bar.add_task("probe", total=opts.duration, status="starting", snaps=0, top="")

    def on_progress(p: session.Progress) -> None:
        if p.allocator is not None and not state["allocator"]:
            state["allocator"] = True
            err.print(f"leakhunt: allocator {p.allocator.describe()}", soft_wrap=True, markup=False)
        if p.status == "probing" and not state["attached"]:
            state["attached"] = True
        if p.status in ("probing", "stopping") and not choice_note:
            choice_note.append("shown")
            if pid is None and command is None:
                target = "the kernel (every task)"
            else:
                shown = redact_argv(command or ()) if redact else command or ()
                target = f"pid {pid}" if pid is not None else " ".join(shown)
            err.print(
                f"leakhunt: probes attached to {target}; probing for up to {opts.duration:g} s",
                soft_wrap=True,
                markup=False,
            )
        view.update(p)
        if bar is not None and task is not None:
            top = f"top: {p.top.stack.top} ({p.top.verdict})" if p.top is not None else ""
            bar.update(
                task, completed=min(p.elapsed, opts.duration), status=p.status, snaps=p.snapshots, top=top
            )

    tools.require_root()
    if pid is not None:
        tools.check_pid(pid)
    choice = choose_backend(opts.backend, mode=opts.mode)
    err.print(
        f"leakhunt: backend {choice.name} ({choice.tool.path} {choice.tool.version}): {choice.reason}",
        soft_wrap=True,
        markup=False,
    )
    if choice.warning:
        err.print(f"leakhunt: WARNING: {choice.warning}", soft_wrap=True, markup=False)
    if bar is not None:
        bar.start()
    try:
        with view:
            return session.run_investigation(
                pid, command=command, options=opts, progress=on_progress, backend=choice, deliver=deliver
            )
    finally:
        if bar is not None:
            bar.stop()


class _Reports:
    """Writes the reports as soon as the result is made, while the probe tool still exits (its
    probes take the kernel seconds to detach), and keeps what it has to say for after the summary."""

    def __init__(self, output_dir: Path, formats: tuple[str, ...], no_redact: bool) -> None:
        self.output_dir = output_dir
        self.formats = formats
        self.redact = not no_redact
        self.said: list[str] = []
        self.error: UsageError | None = None
        self.written = False

    def __call__(self, inv: Investigation) -> None:
        try:
            write_despite_interrupt(
                inv, self.output_dir, self.formats, redact=self.redact, echo=self.said.append
            )
        except UsageError as err:  # raised after the summary (the probe's data is saved)
            self.error = err
        self.written = True


def _finish(inv: Investigation, opts: session.ProbeOptions, reports: _Reports) -> None:
    out = SafeConsole(highlight=False, soft_wrap=True)  # a path or a note must never be cut in two
    _summary(out, inv, opts.top)
    if not reports.written:
        reports(inv)
    for line in reports.said:
        out.print(line, markup=False)
    if reports.error is not None:
        raise reports.error


def _summary(out: Console, inv: Investigation, top: int) -> None:
    t = inv.target
    who = "every task" if t.pid == 0 else f"pid {t.pid}"
    mode = dict(inv.options).get("mode", "alloc")
    out.print(
        f"[bold]{escape(t.comm)}[/bold] ({who}, {mode} mode): {inv.backend.name} {inv.backend.version}, "
        f"{inv.run.duration_s:.1f} s, {len(inv.snapshots)} snapshots, stopped: {inv.run.stop_reason}"
    )
    if inv.allocator is not None:
        out.print(f"allocator: {inv.allocator.describe()}", markup=False)
    leaks = [f for f in inv.findings if f.verdict == "leak"]
    map_full = sum(1 for f in inv.findings if f.map_full)
    if map_full:
        out.print(
            f"[bold yellow]incomplete data:[/bold yellow] the probe's map was full; {map_full} stack(s) "
            "lost allocations and their verdict is unknown (rerun with a larger --map-keys)"
        )
    blind = inv.blind_reason()
    if blind is not None:
        out.print(f"[bold yellow]inconclusive, not a clean result:[/bold yellow] {escape(blind)}")
    too_few = sum(1 for f in inv.findings if f.too_few_snapshots)
    if leaks:
        rate = sum(f.growth_bytes_per_sec for f in leaks)
        out.print(f"[bold red]{len(leaks)} leaking stack(s)[/bold red], together {human_size(rate)}/s")
    elif not inv.snapshots:
        out.print(
            "[bold yellow]no data:[/bold yellow] no snapshot was taken (a longer run or a shorter --interval)"
        )
    elif blind is None and len(inv.snapshots) == 1:
        out.print(
            "[bold yellow]inconclusive, not a clean result:[/bold yellow] one snapshot cannot show growth "
            "(a longer run or a shorter --interval)"
        )
    elif blind is None and too_few:
        out.print(
            f"[bold yellow]inconclusive, not a clean result:[/bold yellow] {too_few} stack(s) grew, seen in "
            "two snapshots only: too few to tell a leak from a cache (a longer run or a shorter --interval)"
        )
    elif blind is None and inv.quality.missed_allocations:
        out.print("[bold yellow]not a clean result:[/bold yellow] no stack kept growing, but")
    elif blind is None:
        out.print("[green]no stack kept growing[/green]")
    if inv.quality.missed_allocations:
        out.print(f"warning: {inv.quality.missed_allocations}", markup=False, soft_wrap=True)
    if inv.findings:
        table = Table(show_header=True, header_style="bold", expand=False)
        table.add_column("#", justify="right")
        table.add_column("verdict")
        table.add_column("growth/s", justify="right")
        table.add_column("outstanding", justify="right")
        table.add_column("conf", justify="right")
        table.add_column("stack (innermost first)", overflow="fold")
        for f in inv.findings[:top]:
            frames = escape(" <- ".join(fr.display() for fr in f.stack.frames[:4]) or "[no stack]")
            style = "red" if f.verdict == "leak" else None
            table.add_row(
                str(f.rank),
                f.verdict,
                f"{human_size(f.growth_bytes_per_sec)}",
                human_size(f.outstanding_bytes),
                f"{f.confidence:.2f}",
                frames,
                style=style,
            )
        out.print(table)
    for note in inv.quality.notes:
        out.print(f"note: {note}", markup=False, soft_wrap=True)
