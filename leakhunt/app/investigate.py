"""The investigation job shared by ``investigate``, ``run`` and ``scan --investigate-top``.

    from leakhunt.app.investigate import ProbeOptions, run_investigation
    inv = run_investigation(pid=1234, options=ProbeOptions(duration=30, interval=5))
    inv.findings[0]  # rank 1: the stack most likely leaking

``leakhunt.probe.live.run_live`` runs the probe (gate, attach, loop, stop); this job parses the
snapshots the tool prints, samples the target's memory every interval and, at the end, ranks the
stacks (``leakhunt.analyze.stacks``) into an ``Investigation``. Whatever stops the run, the probe
process is gone when this returns, and an ``Investigation`` is returned with what was gathered
(``stop_reason`` says why it ended).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from leakhunt import sample
from leakhunt.analyze.coverage import missed_allocations
from leakhunt.analyze.stacks import SnapshotWindow
from leakhunt.app.common import run_info
from leakhunt.errors import LeakhuntError, UsageError
from leakhunt.interrupt import sigterm_as_interrupt
from leakhunt.model import AllocatorInfo, Finding, Investigation, MemSample, Snapshot
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.bpftrace import parse_gauge
from leakhunt.parse.memleak import STOPPED_WHILE_PRINTING
from leakhunt.parse.native import NativeParser
from leakhunt.probe import allocator, tools
from leakhunt.probe import bpftrace as bpftrace_backend
from leakhunt.probe import kernel as kernel_backend
from leakhunt.probe import native as native_backend
from leakhunt.probe.backend import Backend, ProbeCommand, ProbeOptions
from leakhunt.probe.choose import choose_backend
from leakhunt.probe.live import LivePolicy, LiveRun, run_live
from leakhunt.report import preload_templates
from leakhunt.symbols.dwarfstacks import DwarfStacks
from leakhunt.symbols.maps import Mapping, read_maps
from leakhunt.symbols.symbolize import LiveSymbols

__all__ = ["LIVE_TOP", "ProbeOptions", "Progress", "choose_backend", "run_investigation"]

# stacks shown live (Progress.leaders)
LIVE_TOP = 10


@dataclass(frozen=True)
class Progress:
    """What the terminal shows while probing."""

    status: str  # "starting", "attaching", "probing", "stopping"
    elapsed: float
    duration: float
    snapshots: int
    top: Finding | None  # the current rank 1
    leaders: tuple[Finding, ...] = ()  # the current top stacks, rank order (see SnapshotWindow.growing)
    allocator: AllocatorInfo | None = None  # the allocator probed, once detected


def run_investigation(
    pid: int | None = None,
    *,
    command: Sequence[str] | None = None,
    options: ProbeOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    backend: Backend | None = None,
    deliver: Callable[[Investigation], None] | None = None,
) -> Investigation:
    """Probe a running process (``pid``) or a command leakhunt starts (``command``) and analyse it.

    Exactly one of ``pid`` and ``command`` is given, except in kernel mode (``options.mode ==
    "kernel"``), where neither means "the kernel allocations of every task" and a pid or command
    keeps only the allocations that process makes. Raises LeakhuntError subclasses for problems
    found before probing starts (not root, no such pid, tools missing, the probe failing to
    attach). Once probing has started, every stop (duration, target exit, Ctrl-C, SIGTERM) returns
    an Investigation with what was gathered; ``stop_reason`` and ``quality.notes`` say why.

    ``progress`` is called from this thread with a ``Progress`` at every state change and snapshot.
    ``backend`` is a ``choose_backend()`` result when the caller already chose (it announced it).
    ``deliver`` is called with the result as soon as it is made, which for most backends is while
    the probe tool still exits (detaching probes takes the kernel seconds): the caller writes its
    reports meanwhile. The result is returned once the tool is gone, delivered or not.
    """
    opts = options or ProbeOptions()
    _check_options(opts)
    if pid is not None and command is not None:
        raise UsageError("give either a pid or a command")
    if pid is None and command is None and opts.mode != "kernel":
        raise UsageError("give either a pid or a command")
    tools.require_root()
    if deliver is not None:
        preload_templates("investigation")  # compiled while it probes, not at the stop
    chosen = backend or choose_backend(opts.backend, mode=opts.mode)
    if opts.mode == "kernel":
        kernel_backend.check_options(opts, chosen.name, pid if command is None else 0)
    job = _Investigation(opts, progress, tuple(command) if command is not None else None)
    made: list[Investigation] = []

    def on_data(run: LiveRun) -> None:
        # the tool's data is complete: rank, symbolize and deliver while it exits
        made.append(job.result(run))
        if deliver is not None:
            deliver(made[0])

    with sigterm_as_interrupt():
        run = run_live(
            chosen,
            job,
            pid=pid,
            command=tuple(command) if command is not None else None,
            policy=LivePolicy(on_data=on_data),
        )
    if made:
        return made[0]
    inv = job.result(run)
    if deliver is not None:
        deliver(inv)
    return inv


def _check_options(opts: ProbeOptions) -> None:
    if opts.duration <= 0:
        raise UsageError("--duration must be > 0")
    if opts.interval < 0.1:
        raise UsageError("--interval must be at least 0.1 s")
    if opts.sample_rate < 1:
        raise UsageError("--sample-rate must be >= 1")
    if opts.min_size is not None and opts.min_size < 0:
        raise UsageError("--min-size must be >= 0")
    if opts.max_size is not None and opts.max_size < 1:
        raise UsageError("--max-size must be > 0")
    if opts.min_size is not None and opts.max_size is not None and opts.min_size > opts.max_size:
        raise UsageError("--min-size is larger than --max-size")
    if opts.older_than_ms is not None and opts.older_than_ms < 0:
        raise UsageError("--older-than must be >= 0")
    if opts.map_keys < 1024:
        raise UsageError("--map-keys must be at least 1024")
    if opts.sample_bytes is not None:
        if opts.sample_bytes < 1 or opts.sample_bytes > native_backend.MAX_SAMPLE_BYTES:
            raise UsageError("--sample-bytes must be between 1 and 256M")
        if opts.backend not in ("auto", "native"):
            raise UsageError("--sample-bytes needs the native backend", hint="use --backend native or auto")


class _Investigation:
    """The investigate job run by ``run_live``: parse snapshots, sample the target's memory."""

    def __init__(
        self,
        opts: ProbeOptions,
        progress: Callable[[Progress], None] | None,
        launch: tuple[str, ...] | None = None,
    ) -> None:
        self.opts = opts
        self.launch = launch  # the command leakhunt starts (None: a running pid)
        self.allocator: AllocatorInfo | None = None  # detected (probe.allocator), alloc mode only
        self.really: AllocatorInfo | None = None  # what the process uses, when --obj named another
        self.backend_gaps: tuple[str, ...] = ()
        self.duration = opts.duration
        self.progress = progress or (lambda p: None)
        self.stats = ParseStats()
        self.parser: LineParser | None = None
        self.cmd: ProbeCommand | None = None
        # the snapshots, bounded over a long run (evenly spaced), with each stack's series kept up to date
        self.window = SnapshotWindow()
        self.any_stacks = False  # some snapshot held a stack
        self.memory: list[MemSample] = []
        self.notes: list[str] = []
        self.pid: int | None = None  # None: kernel mode over every task
        self.maps: tuple[Mapping, ...] = ()  # the target's mappings, last read (for source lines)
        self.symbols: LiveSymbols | None = None  # started when the probe stops
        self.dwarf: DwarfStacks | None = None  # native --unwind dwarf: unwinds the stack copies
        self.t0 = time.monotonic()
        self.wall0 = datetime.now()
        self.next_mem = 0.0
        self.snap_offset: float | None = None  # session time of the parser's t=0
        self.target_gone_at: float | None = None
        self.dropped_after_exit = 0
        self.max_live = 0
        # allocator calls counted by the probe's gauges; None while the backend cannot count them
        self.allocs_seen: int | None = None
        self.frees_seen: int | None = None
        self.stopping_ = False

    # --- LiveJob ----------------------------------------------------------------------------

    def begin(self, pid: int | None, info: sample.ProcessInfo, started_at: str) -> None:
        self.pid = pid
        self.progress(Progress("starting", 0.0, self.opts.duration, 0, None))

    def command(self, backend: Backend, pid: int | None, *, script_path: str, launched: bool) -> ProbeCommand:
        if self.opts.sample_bytes is not None and not backend.byte_sampling:
            raise UsageError("--sample-bytes needs the native backend", hint="use --backend native")
        if self.opts.mode == "alloc" and pid is not None and self.allocator is None:
            launch = self.launch if launched else None
            self.allocator = allocator.detect(pid, launch, self.opts.obj)
            if self.opts.obj:
                # what the process really uses, to name it when --obj hooked something else
                with contextlib.suppress(LeakhuntError):
                    self.really = allocator.detect(pid, launch, None)
        cmd = backend.investigate(
            pid, self.opts, script_path=script_path, launched=launched, allocator=self.allocator
        )
        assert cmd.new_parser is not None
        self.cmd, self.parser = cmd, cmd.new_parser(self.stats)
        if self.opts.mode == "alloc":
            self.backend_gaps = cmd.notes
        if isinstance(self.parser, NativeParser) and self.opts.unwind == "dwarf" and pid is not None:
            self.dwarf = DwarfStacks(pid, self.parser.raw)
        self.notes.extend(n for n in cmd.notes if n not in self.notes)
        if cmd.counts_calls:
            self.allocs_seen = self.frees_seen = 0
        return cmd

    def attaching(self, elapsed: float) -> None:
        self.progress(Progress("attaching", elapsed, self.opts.duration, 0, None, allocator=self.allocator))

    def started(self, pid: int | None, info: sample.ProcessInfo) -> None:
        self.t0 = time.monotonic()
        self.wall0 = datetime.now()
        self.progress(Progress("probing", 0.0, self.opts.duration, 0, None))

    def tick(self, now: float) -> bool:
        if now >= self.next_mem and self.pid is not None:
            mem = sample.read_mem(self.pid, round(now, 3))
            if mem is not None:
                self.memory.append(mem)
            self.next_mem = now + self.opts.interval
        expected = int(self.opts.duration / self.opts.interval + 1e-9)
        # done once the interval due at the end has been printed (or is not coming)
        return now >= self.opts.duration and (
            self.window.taken >= expected or now >= self.opts.duration + self.opts.interval + 2.0
        )

    def target_gone(self, now: float) -> None:
        self.target_gone_at = now

    def stopping(self, now: float) -> None:
        # SIGINT follows: bpftrace prints a last snapshot (its END block); memleak none (a SIGINT in
        # its sleep exits quietly, one while it prints cuts that block short: finish leaves it out).
        self.stopping_ = True  # read by _add only, for the lines fed from now on
        self.progress(Progress("stopping", now, self.opts.duration, self.window.taken, None))
        # while the tool stops (seconds for bpftrace), the stacks seen so far get their lines
        self.symbols = LiveSymbols(self.maps)
        self.symbols.start({ss.stack for snap in self.window.snapshots() for ss in snap.stacks})

    def finish(self, stderr: str) -> None:
        assert self.parser is not None and self.cmd is not None
        last = self.parser.finish()
        if not isinstance(last, Snapshot):
            return
        if self.cmd.cut_last_block is not None and self.cmd.cut_last_block(stderr):
            # its stacks not printed yet would read as freed: a leak's last point at 0
            self.notes.append(STOPPED_WHILE_PRINTING)
            return
        self._add(last)

    def gathered(self) -> bool:
        return bool(self.window.taken)

    def feed(self, line: str) -> None:
        assert self.cmd is not None and self.parser is not None
        if self.cmd.target_exited is not None and self.cmd.target_exited(line):
            self.window.mark_exited()
            return
        if self.cmd.is_chatter(line) or line.strip() == bpftrace_backend.ATTACHED_MARKER:
            return
        gauge = parse_gauge(line)
        if gauge is not None:
            # the script's gauges: kept here, not in the report's notes
            name, value = gauge
            if name == "live":
                self.max_live = max(self.max_live, value)
            elif name == "allocs":
                self.allocs_seen = max(self.allocs_seen or 0, value)
            else:
                self.frees_seen = max(self.frees_seen or 0, value)
            return
        snap = self.parser.feed(line)
        if isinstance(snap, Snapshot):
            self._add(snap)

    def _add(self, snap: Snapshot) -> None:
        now = time.monotonic() - self.t0
        if self.dwarf is not None:
            snap = self.dwarf.apply(snap)
        if self.target_gone_at is not None and _mostly_unresolved(snap):
            # Printed after the target exited: its stacks can no longer be symbolised.
            self.dropped_after_exit += 1
            return
        if self.stopping_ and not snap.stacks and self.any_stacks:
            # an empty block at the very end is a tool cut off while printing, not "all freed"
            self.notes.append("an incomplete last snapshot printed while the probe stopped was dropped")
            return
        if self.snap_offset is None:
            # Place the parser's clock on the session's: by the wall-clock time the tool printed
            # (memleak's block is complete only when the next one starts, an interval later).
            at = _clock_since(snap.clock, self.wall0)
            self.snap_offset = max((at if at is not None else now) - snap.t, 0.0)
        if self.target_gone_at is not None and self.cmd is not None and self.cmd.target_exited is None:
            # what it shows includes the target's clean-up at exit. Not for a tool that says so in
            # its stream: leakhunt may read its snapshots long after they were taken (unwinding
            # thousands of new stacks), and would mark one taken while the target still ran
            self.window.mark_exited()
        self.window.add(replace(snap, t=round(snap.t + self.snap_offset, 3)))
        self.any_stacks = self.any_stacks or bool(snap.stacks)
        if self.pid is not None and self.target_gone_at is None:
            # kept from the last read while the target lives: frames are placed in files at the end
            self.maps = read_maps(self.pid) or self.maps
        if self.stopping_:
            return  # the last lines: the full ranking follows at once, no live one for the view
        leaders: tuple[Finding, ...] = ()
        if self.window.taken >= 2:
            # bounded: only the stacks that grew most are judged, over the window's kept snapshots
            leaders = self.window.growing(min_growth_bytes=self.opts.min_growth_bytes, top=LIVE_TOP)
        top = leaders[0] if leaders else None
        self.progress(Progress("probing", now, self.opts.duration, self.window.taken, top, leaders))

    # --- result -----------------------------------------------------------------------------

    def result(self, run: LiveRun) -> Investigation:
        findings = self.window.findings(min_growth_bytes=self.opts.min_growth_bytes)
        snapshots = self.window.snapshots()
        notes = list(self.notes)
        if self.window.stride > 1:
            notes.append(
                f"long run: {self.window.taken} snapshots taken, {len(snapshots)} kept evenly spaced "
                f"(1 in {self.window.stride}) for the analysis and the reports"
            )
        if self.dropped_after_exit:
            notes.append(
                f"{self.dropped_after_exit} snapshot(s) printed after the target exited were dropped: "
                "their stacks could not be symbolised"
            )
        map_full = False
        assert self.cmd is not None
        if self.window.untracked:
            map_full = True
            notes.append(
                f"bpftrace's map of live allocations was full (a map size of {self.opts.map_keys}): "
                f"{sum(self.window.untracked.values()):,} allocations of "
                f"{len(self.window.untracked)} stack(s) were not tracked, and those stacks' verdicts "
                "are unknown (raise --map-keys)"
            )
        elif self.cmd.max_tracked is not None and self.max_live >= 0.95 * self.cmd.max_tracked:
            map_full = True
            notes.append(
                f"bpftrace tracked up to {self.max_live} live allocations against a map size of "
                f"{self.cmd.max_tracked}: later allocations may be missing (raise --map-keys)"
            )
        if not self.window.taken:
            notes.append("no snapshot was taken: the run ended before the first interval")
        quality = self.stats.quality(
            notes=tuple(n for n in notes if n not in self.stats.notes),
            map_full=map_full or self.stats.map_full,
            sample_rate=self.opts.sample_rate,
            allocations_seen=self.allocs_seen
            if self.allocs_seen is not None
            else self.stats.allocations_seen,
            frees_seen=self.frees_seen if self.frees_seen is not None else self.stats.frees_seen,
        )
        if self.dwarf is not None:
            quality = self.dwarf.quality(quality)
            self.dwarf.close()
        if self.opts.mode == "alloc":
            missed = missed_allocations(
                self.memory,
                snapshots,
                probed=self.allocator,
                really=self.really,
                sample_rate=self.opts.sample_rate,
                size_filtered=self.opts.min_size is not None or self.opts.max_size is not None,
                backend_gaps=self.backend_gaps,
                unparsed_lines=quality.unparsed_lines,
            )
            quality = replace(quality, missed_allocations=missed)
        inv = Investigation(
            target=run.target,
            backend=run.info,
            run=run_info(run.started_at, run.duration_s, run.stop_reason),
            interval_s=self.opts.interval,
            snapshots=snapshots,
            findings=findings,
            memory=tuple(self.memory),
            quality=quality,
            options=self.opts.as_pairs(),
            allocator=self.allocator,
        )
        symbols = self.symbols if self.symbols is not None else LiveSymbols(self.maps)
        return symbols.investigation(inv)


# --- helpers ------------------------------------------------------------------------------------


def _clock_since(clock: str | None, start: datetime) -> float | None:
    """Seconds from ``start`` (local time) to a tool's printed "HH:MM:SS" (None if unparsable)."""
    if not clock:
        return None
    try:
        h, m, sec = (int(x) for x in clock.strip().strip("[]").split(":"))
    except ValueError:
        return None
    delta = float((h * 3600 + m * 60 + sec) - (start.hour * 3600 + start.minute * 60 + start.second))
    delta -= start.microsecond / 1e6
    if delta < -43200:
        delta += 86400  # past midnight
    return delta


def _mostly_unresolved(snap: Snapshot) -> bool:
    frames = [f for s in snap.stacks for f in s.stack.frames]
    if not frames:
        return False
    return sum(1 for f in frames if f.is_unknown) * 2 >= len(frames)
