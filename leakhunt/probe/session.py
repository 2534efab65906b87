"""The live investigation loop shared by ``investigate``, ``run`` and ``scan --investigate-top``.

    from leakhunt.probe.session import ProbeOptions, run_investigation
    inv = run_investigation(pid=1234, options=ProbeOptions(duration=30, interval=5))
    inv.findings[0]  # rank 1: the stack most likely leaking

Order of events: check privileges and the target -> choose the backend -> start the probe (and,
for ``run``, the command held at a gate before exec) -> wait until the probes are attached ->
release the command -> read snapshots and sample the target's memory every interval -> stop at the
duration, when the target exits, or on Ctrl-C / SIGTERM -> stop the probe with SIGINT (it prints a
last snapshot) -> analyse. Whatever stops the run, the probe process is gone when this returns, and
an ``Investigation`` is returned with what was gathered (``stop_reason`` says why it ended).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from leakhunt import __version__, sample
from leakhunt.analyze.stacks import SnapshotWindow
from leakhunt.errors import ProbeFailed, TargetError, ToolMissing, UsageError
from leakhunt.model import (
    BackendInfo,
    Finding,
    Investigation,
    MemSample,
    Snapshot,
    Target,
)
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.bpftrace import parse_gauge
from leakhunt.parse.native import NativeParser
from leakhunt.probe import bpftrace as bpftrace_backend
from leakhunt.probe import growth as growth_backend
from leakhunt.probe import kernel as kernel_backend
from leakhunt.probe import live, runner, tools
from leakhunt.probe import memleak as memleak_backend
from leakhunt.probe import native as native_backend
from leakhunt.probe.backend import ProbeCommand, ProbeOptions
from leakhunt.symbols.dwarfstacks import DwarfStacks
from leakhunt.symbols.maps import Mapping, read_maps
from leakhunt.symbols.symbolize import symbolize_live

__all__ = ["BackendChoice", "ProbeOptions", "Progress", "choose_backend", "run_investigation"]

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


@dataclass(frozen=True)
class BackendChoice:
    name: str  # "native" | "bpftrace" | "bcc"
    tool: tools.Tool
    reason: str
    warning: str | None = None  # to show before attaching (a cost the user accepted explicitly)


def host_wide_bpftrace(tool: tools.Tool) -> bool:
    """True when this bpftrace fires its shared-library uprobes in every process, not only ``-p``'s.

    bpftrace passes the pid of ``-p`` to the kernel for library uprobes only since 0.20
    (bpftrace#2830); before, the pid predicate runs *after* the trap, so every process on the host
    that calls malloc or free pays for the probe (measured here with 0.17: an unprobed loop went
    from 13 ns to 7,252 ns per malloc/free pair). An unknown version counts as old.
    """
    version = tool.version_tuple
    return not version or version < (0, 20)


def _host_wide_warning(tool: tools.Tool) -> str:
    return (
        f"bpftrace {tool.version} attaches its malloc/free probes for EVERY process on this host, "
        "not only the target (bpftrace < 0.20 ignores -p for library uprobes): while it runs, every "
        "process that allocates memory slows down (about 7 us per malloc/free pair here)"
    )


def choose_backend(requested: str, *, allow_native: bool = True, mode: str = "alloc") -> BackendChoice:
    """The backend to use for ``--backend auto|native|bpftrace|bcc``, with the reason for the choice.

    auto never picks a backend that slows other processes: it prefers leakhunt's own probe
    (native: pid-filtered in the kernel, probes on emulated instructions, the cheapest), then BCC's
    memleak (pid-filtered in the kernel), then a bpftrace that filters by pid (>= 0.20). Where only
    an older bpftrace exists it refuses with the reason: ``--backend bpftrace`` accepts the cost,
    and the choice carries a warning to show before attaching. ``allow_native=False`` (trace mode,
    which the native probe does not do) skips native.
    """
    if requested not in ("auto", "native", "bpftrace", "bcc"):
        raise UsageError(f"unknown backend {requested!r}", hint="choose auto, native, bpftrace or bcc")
    if mode != "alloc":
        return _choose_tracepoint_backend(requested, mode)
    if requested == "native":
        if not allow_native:
            raise UsageError("the native backend has no per-call trace", hint="use --backend bcc or bpftrace")
        host, why_not = _native_host()
        if host is None:
            raise ToolMissing(f"the native backend cannot run here: {why_not}", hint=tools.SETUP_HINT)
        return BackendChoice("native", host, "requested with --backend native")
    if requested == "bpftrace":
        bpftrace = tools.find_bpftrace()
        if bpftrace is None:
            raise ToolMissing("bpftrace is not installed", hint=tools.SETUP_HINT)
        warning = _host_wide_warning(bpftrace) if host_wide_bpftrace(bpftrace) else None
        return BackendChoice("bpftrace", bpftrace, "requested with --backend bpftrace", warning)
    if requested == "bcc":
        memleak = tools.find_memleak()
        if memleak is None:
            raise ToolMissing("BCC's memleak is not installed (memleak-bpfcc)", hint=tools.SETUP_HINT)
        if memleak.flavor == "bcc" and tools.kernel_headers_dir() is None:
            raise ToolMissing(
                f"{memleak.path} needs kernel headers for {os.uname().release} and none were found",
                hint=tools.SETUP_HINT,
            )
        return BackendChoice("bcc", memleak, "requested with --backend bcc")
    skipped: list[str] = []
    if allow_native:
        host, why_not = _native_host()
        if host is not None:
            return BackendChoice(
                "native",
                host,
                f"auto: leakhunt's own probe (BCC {host.version} via {host.path}): probes fire for the "
                "target only and sit on instructions the kernel emulates, the cheapest backend",
            )
        skipped.append(f"native: {why_not}")
    memleak = tools.find_memleak()
    if memleak is not None and (memleak.flavor == "libbpf" or tools.kernel_headers_dir() is not None):
        return BackendChoice(
            "bcc",
            memleak,
            f"auto: {memleak.path} (its probes fire for the target only)"
            + (f"; not {'; '.join(skipped)}" if skipped else ""),
        )
    skipped.append(
        "bcc: memleak is not installed" if memleak is None else "bcc: no kernel headers to compile with"
    )
    bpftrace = tools.find_bpftrace()
    if bpftrace is not None and not host_wide_bpftrace(bpftrace):
        return BackendChoice(
            "bpftrace",
            bpftrace,
            f"auto: bpftrace {bpftrace.version} (filters by pid in the kernel); not {'; '.join(skipped)}",
        )
    if bpftrace is not None:
        raise UsageError(
            _host_wide_warning(bpftrace) + f". No other backend works here ({'; '.join(skipped)})",
            hint="pass --backend bpftrace to accept that cost, or install what the native backend needs "
            "(python3-bpfcc and kernel headers: `bash scripts/setup.sh`)",
        )
    raise ToolMissing(f"no probe backend works here ({'; '.join(skipped)})", hint=tools.SETUP_HINT)


def _choose_tracepoint_backend(requested: str, mode: str) -> BackendChoice:
    """The backend of kernel and growth mode: tracepoints, not uprobes.

    bpftrace first: its tracepoint scripts filter by pid and cost no process anything it does not
    already pay (no uprobe: the slowdown of host-wide uprobes in bpftrace < 0.20 does not apply).
    BCC's memleak without -p does kernel mode (every task); growth mode is bpftrace only.
    """
    if requested == "native" or (requested == "bcc" and mode == "growth"):
        raise UsageError(f"--backend {requested} does not do --mode {mode}", hint="use --backend bpftrace")
    bpftrace = tools.find_bpftrace() if requested in ("auto", "bpftrace") else None
    if bpftrace is not None:
        why = "requested with --backend bpftrace" if requested == "bpftrace" else (
            f"auto: bpftrace {bpftrace.version} at {bpftrace.path} ({mode} mode reads tracepoints; "
            "bpftrace filters them by pid)"
        )  # fmt: skip
        return BackendChoice("bpftrace", bpftrace, why)
    if requested == "bpftrace" or mode == "growth":
        raise ToolMissing(f"--mode {mode} needs bpftrace, which is not installed", hint=tools.SETUP_HINT)
    memleak = tools.find_memleak()
    if memleak is None or memleak.flavor != "bcc" or tools.kernel_headers_dir() is None:
        raise ToolMissing(
            "kernel mode needs bpftrace, or BCC's memleak with kernel headers", hint=tools.SETUP_HINT
        )
    why = (
        "requested with --backend bcc" if requested == "bcc" else f"auto: bpftrace not found; {memleak.path}"
    )
    return BackendChoice("bcc", memleak, why)


def _native_host() -> tuple[tools.Tool | None, str]:
    """The native backend's host Python, or None and why not."""
    why_not = native_backend.unusable_reason()
    if why_not is not None:
        return None, why_not
    host = native_backend.find_host()
    if host is None:
        return None, "no system python3 with BCC's module (apt-get install python3-bpfcc)"
    return host, ""


def run_investigation(
    pid: int | None = None,
    *,
    command: Sequence[str] | None = None,
    options: ProbeOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    backend: BackendChoice | None = None,
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
    """
    opts = options or ProbeOptions()
    _check_options(opts)
    if pid is not None and command is not None:
        raise UsageError("give either a pid or a command")
    if pid is None and command is None and opts.mode != "kernel":
        raise UsageError("give either a pid or a command")
    tools.require_root()
    choice = backend or choose_backend(opts.backend, mode=opts.mode)
    if opts.mode == "kernel":
        kernel_backend.check_options(opts, choice.name, pid if command is None else 0)
    session = _Session(choice, opts, progress)
    with runner.sigterm_as_interrupt():
        return session.run(pid, tuple(command) if command is not None else None)


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


class _Session:
    def __init__(
        self, choice: BackendChoice, opts: ProbeOptions, progress: Callable[[Progress], None] | None
    ) -> None:
        self.choice = choice
        self.opts = opts
        self.progress = progress or (lambda p: None)
        self.stats = ParseStats()
        # the snapshots, bounded over a long run (evenly spaced), with each stack's series kept up to date
        self.window = SnapshotWindow()
        self.any_stacks = False  # some snapshot held a stack
        self.memory: list[MemSample] = []
        self.notes: list[str] = []
        self.t0 = time.monotonic()
        self.wall0 = datetime.now()
        self.snap_offset: float | None = None  # session time of the parser's t=0
        self.target_gone_at: float | None = None
        self.dropped_after_exit = 0
        self.max_live = 0
        # allocator calls counted by the probe; None while the backend cannot count them
        self.allocs_seen: int | None = 0 if choice.name == "bpftrace" else None
        self.frees_seen: int | None = 0 if choice.name == "bpftrace" else None
        self.stopping = False
        self.pid: int | None = None
        self.maps: tuple[Mapping, ...] = ()  # the target's mappings, last read (for source lines)
        self.dwarf: DwarfStacks | None = None  # native --unwind dwarf: unwinds the stack copies

    # --- the whole run ----------------------------------------------------------------------

    def run(self, pid: int | None, command: tuple[str, ...] | None) -> Investigation:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        gate: runner.GatedCommand | None = None
        probe: runner.Child | None = None
        workdir = tempfile.mkdtemp(prefix="leakhunt-")
        stop_reason = "duration"
        exit_code: int | None = None
        self.progress(Progress("starting", 0.0, self.opts.duration, 0, None))
        try:
            if command is not None:
                gate = runner.GatedCommand(command)
                pid = gate.pid
                gate.wait_ready()
            info = tools.check_pid(pid) if pid is not None else _ALL_TASKS
            create_time = info.create_time
            self.pid = pid
            cmd = self._probe_command(pid, workdir, launched=gate is not None)
            probe = runner.Child(cmd.argv, env={**os.environ, **dict(cmd.env)}, name=cmd.info.name)
            parser = cmd.new_parser(self.stats)
            if isinstance(parser, NativeParser) and self.opts.unwind == "dwarf" and pid is not None:
                self.dwarf = DwarfStacks(pid, parser.raw)
            try:
                self._wait_attached(probe, cmd, parser, pid, gate)
                if cmd.arm is not None:
                    cmd.arm(pid or 0)
                if gate is not None:
                    gate.release()
                    info = _describe_after_exec(gate, info)
                    create_time = info.create_time
                self.t0 = time.monotonic()
                self.wall0 = datetime.now()
                self.progress(Progress("probing", 0.0, self.opts.duration, 0, None))
                stop_reason = self._probe_loop(probe, parser, pid, create_time, gate)
            except KeyboardInterrupt:
                stop_reason = "interrupted"
                self.notes.append(
                    "interrupted (Ctrl-C or SIGTERM): the report holds what was gathered so far"
                )
            duration = time.monotonic() - self.t0
            self.progress(Progress("stopping", duration, self.opts.duration, self.window.taken, None))
            target_alive = self._alive(pid, create_time, gate)
            if not target_alive and self.target_gone_at is None:
                self.target_gone_at = duration
            probe_exit = self._stop_probe(probe, parser, cmd)
            if gate is not None:
                exit_code, stop_reason = self._finish_command(gate, stop_reason)
            if (
                probe_exit.returncode not in (0, -2, 130)
                and not self.window.taken
                and stop_reason == "duration"
            ):
                raise ProbeFailed(
                    f"{cmd.info.name} ended with {probe_exit.describe()} before printing anything",
                    hint=_probe_hint(probe.stderr_text),
                    stderr=probe.stderr_text,
                )
        finally:
            live.stop_leftovers((probe,), gate)
            shutil.rmtree(workdir, ignore_errors=True)
        target = live.target(pid or 0, info, command, exit_code=exit_code, stop_reason=stop_reason)
        return self._build(target, cmd.info, started_at, duration, stop_reason)

    # --- stages -----------------------------------------------------------------------------

    def _probe_command(self, pid: int | None, workdir: str, *, launched: bool) -> ProbeCommand:
        if self.opts.mode == "kernel":
            if self.choice.name == "bcc":
                return kernel_backend.memleak_command(self.choice.tool, self.opts, reason=self.choice.reason)
            script_path = os.path.join(workdir, "kernel.bt")
            cmd = kernel_backend.bpftrace_command(
                self.choice.tool,
                pid,
                self.opts,
                script_path=script_path,
                reason=self.choice.reason,
                launched=launched,
            )
            _write_script(script_path, cmd)
            return cmd
        assert pid is not None
        if self.opts.mode == "growth":
            script_path = os.path.join(workdir, "growth.bt")
            cmd = growth_backend.command(
                self.choice.tool,
                pid,
                self.opts,
                script_path=script_path,
                reason=self.choice.reason,
                launched=launched,
            )
            _write_script(script_path, cmd)
            self.notes.append(growth_backend.CAVEAT)
            return cmd
        if self.choice.name == "native":
            lib = _object_path(pid, self.opts.obj) if self.opts.obj else tools.target_libc(pid)
            cmd = native_backend.command(
                self.choice.tool, pid, lib, self.opts, workdir=workdir, reason=self.choice.reason,
                launched=launched,
            )  # fmt: skip
            self.notes.extend(cmd.notes)
            return cmd
        if self.opts.sample_bytes is not None:
            raise UsageError("--sample-bytes needs the native backend", hint="use --backend native")
        if self.choice.name == "bpftrace":
            lib = _object_path(pid, self.opts.obj) if self.opts.obj else tools.target_libc(pid)
            script_path = os.path.join(workdir, "investigate.bt")
            cmd = bpftrace_backend.command(
                self.choice.tool,
                pid,
                lib,
                self.opts,
                script_path=script_path,
                reason=self.choice.reason,
                launched=launched,
            )
            _write_script(script_path, cmd)
            return cmd
        if self.opts.obj:
            _object_path(pid, self.opts.obj)  # validate early; memleak takes the name as given
        return memleak_backend.command(self.choice.tool, pid, self.opts, reason=self.choice.reason)

    def _wait_attached(
        self,
        probe: runner.Child,
        cmd: ProbeCommand,
        parser: LineParser,
        pid: int | None,
        gate: runner.GatedCommand | None,
    ) -> None:
        watch = live.AttachWatch(
            probe,
            cmd.info.name,
            pid or 0,
            launched=gate is not None or pid is None,  # no process to watch: every task is traced
            timeout=live.attach_timeout(cmd.info.name),
            hint=_probe_hint,
            exit_status_in_message=True,
        )
        while True:
            elapsed = time.monotonic() - watch.started
            self.progress(Progress("attaching", elapsed, self.opts.duration, 0, None))
            line = probe.get_line(live.POLL)
            if line is not None:
                if cmd.attached(line, probe.stderr_text, probe.pid):
                    self._feed(parser, cmd, line)
                    return
                self._feed(parser, cmd, line)
            elif cmd.attached(None, probe.stderr_text, probe.pid):
                return
            watch.check()

    def _probe_loop(
        self,
        probe: runner.Child,
        parser: LineParser,
        pid: int | None,
        create_time: float,
        gate: runner.GatedCommand | None,
    ) -> str:
        cmd_parser = parser
        next_mem = 0.0
        expected = int(self.opts.duration / self.opts.interval + 1e-9)
        while True:
            now = time.monotonic() - self.t0
            if now >= next_mem and pid is not None:
                mem = sample.read_mem(pid, round(now, 3))
                if mem is not None:
                    self.memory.append(mem)
                next_mem = now + self.opts.interval
            if now >= self.opts.duration and (
                self.window.taken >= expected or now >= self.opts.duration + self.opts.interval + 2.0
            ):
                # the interval due at the end has been printed (or is not coming)
                return "duration"
            if not self._alive(pid, create_time, gate):
                self.target_gone_at = now
                self.notes.append(live.target_exit_note(now, self.opts.duration))
                return "target-exited"
            line = probe.get_line(live.POLL)
            if line is not None:
                self._feed(cmd_parser, None, line)
            elif probe.eof or not probe.alive():
                self.notes.append(f"the probe ended on its own after {now:.1f} s")
                return "error" if pid is None or live.pid_alive(pid) else "target-exited"

    def _feed(self, parser: LineParser, cmd: ProbeCommand | None, line: str) -> None:
        if cmd is not None and cmd.is_chatter(line):
            return
        if line.strip() == bpftrace_backend.ATTACHED_MARKER:
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
        snap = parser.feed(line)
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
        if self.stopping and not snap.stacks and self.any_stacks:
            # an empty block at the very end is a tool cut off while printing, not "all freed"
            self.notes.append("an incomplete last snapshot printed while the probe stopped was dropped")
            return
        if self.snap_offset is None:
            # Place the parser's clock on the session's: by the wall-clock time the tool printed
            # (memleak's block is complete only when the next one starts, an interval later).
            at = _clock_since(snap.clock, self.wall0)
            self.snap_offset = max((at if at is not None else now) - snap.t, 0.0)
        self.window.add(replace(snap, t=round(snap.t + self.snap_offset, 3)))
        self.any_stacks = self.any_stacks or bool(snap.stacks)
        if self.pid is not None and self.target_gone_at is None:
            # kept from the last read while the target lives: frames are placed in files at the end
            self.maps = read_maps(self.pid) or self.maps
        leaders: tuple[Finding, ...] = ()
        if self.window.taken >= 2:
            # bounded: only the stacks that grew most are judged, over the window's kept snapshots
            leaders = self.window.growing(min_growth_bytes=self.opts.min_growth_bytes, top=LIVE_TOP)
        top = leaders[0] if leaders else None
        self.progress(Progress("probing", now, self.opts.duration, self.window.taken, top, leaders))

    def _stop_probe(self, probe: runner.Child, parser: LineParser, cmd: ProbeCommand) -> runner.Exit:
        # SIGINT: both tools print a last snapshot (bpftrace's END block, memleak... only when
        # interrupted outside its sleep; its blocks so far are kept in any case).
        self.stopping = True  # read by _add only, for the lines fed below
        exit_ = live.stop_and_drain(probe, 8.0, lambda line: self._feed(parser, cmd, line))
        last = parser.finish()
        if isinstance(last, Snapshot):
            self._add(last)
        if exit_.killed:
            self.notes.append(f"{cmd.info.name} did not stop on SIGINT and was killed")
        return exit_

    def _finish_command(self, gate: runner.GatedCommand, stop_reason: str) -> tuple[int | None, str]:
        code = gate.child.poll()
        if code is None:
            gate_exit = gate.stop(grace=3.0)
            self.notes.append(
                f"the command was still running at the end and was stopped ({gate_exit.describe()})"
            )
            return gate_exit.returncode, stop_reason
        desc = runner.Exit(code, False).describe()
        self.notes.append(f"the command {desc}")
        return code, "target-exited" if stop_reason == "target-exited" else stop_reason

    def _alive(self, pid: int | None, create_time: float, gate: runner.GatedCommand | None) -> bool:
        if gate is not None:
            return gate.child.poll() is None
        if pid is None:
            return True  # kernel mode over every task: nothing to outlive
        return live.same_process(pid, create_time)

    # --- result -----------------------------------------------------------------------------

    def _build(
        self, target: Target, backend: BackendInfo, started_at: str, duration: float, stop_reason: str
    ) -> Investigation:
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
        if self.window.untracked:
            map_full = True
            notes.append(
                f"bpftrace's map of live allocations was full (a map size of {self.opts.map_keys}): "
                f"{sum(self.window.untracked.values()):,} allocations of "
                f"{len(self.window.untracked)} stack(s) were not tracked, and those stacks' verdicts "
                "are unknown (raise --map-keys)"
            )
        elif backend.name == "bpftrace" and self.max_live >= 0.95 * self.opts.map_keys:
            map_full = True
            notes.append(
                f"bpftrace tracked up to {self.max_live} live allocations against a map size of "
                f"{self.opts.map_keys}: later allocations may be missing (raise --map-keys)"
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
        inv = Investigation(
            target=target,
            backend=backend,
            started_at=started_at,
            duration_s=round(duration, 3),
            interval_s=self.opts.interval,
            snapshots=snapshots,
            findings=findings,
            memory=tuple(self.memory),
            quality=quality,
            stop_reason=stop_reason,
            kernel=platform.release(),
            host=socket.gethostname(),
            leakhunt_version=__version__,
            options=self.opts.as_pairs(),
        )
        return symbolize_live(inv, self.maps)


# --- helpers ------------------------------------------------------------------------------------

# The "process" of a kernel-mode run over every task (reports show pid 0, comm "kernel").
_ALL_TASKS = sample.ProcessInfo(
    pid=0,
    create_time=0.0,
    comm="kernel",
    cmdline=(),
    exe=None,
    username=None,
    is_kernel_thread=True,
    status="running",
)


def _write_script(path: str, cmd: ProbeCommand) -> None:
    """The probe's bpftrace program, written where its argv expects it (private, never reused)."""
    assert cmd.script is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(cmd.script)


def _describe_after_exec(gate: runner.GatedCommand, before: sample.ProcessInfo) -> sample.ProcessInfo:
    """The launched command's identity once the gate's shell has exec'd it."""
    found: list[sample.ProcessInfo] = []

    def execd() -> bool:
        info = sample.describe(gate.pid)
        if info is not None and info.cmdline[:1] != ("/bin/sh",):
            # comm and cmdline are read one after the other: read again now that exec is done
            found.append(sample.describe(gate.pid) or info)
            return True
        return gate.child.poll() is not None

    runner.wait_until(execd, timeout=3.0, step=0.005)
    if found and found[-1].cmdline[:1] != ("/bin/sh",):
        return found[-1]
    return replace(before, cmdline=gate.argv, comm=os.path.basename(gate.argv[0])[:15])


def _object_path(pid: int, obj: str) -> str:
    """--obj as a file path: an absolute path, a library name the target maps, or a file here."""
    if os.path.isabs(obj):
        path = tools.path_in_target(pid, obj)
        if not os.path.isfile(path):
            raise UsageError(f"--obj {obj}: no such file")
        return path
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    mapped = parts[5].strip()
                    base = os.path.basename(mapped)
                    if base == obj or base.startswith(f"lib{obj}.so") or base.startswith(f"{obj}.so"):
                        return tools.path_in_target(pid, mapped)
    except OSError as err:
        raise TargetError(f"cannot read /proc/{pid}/maps") from err
    raise UsageError(
        f"--obj {obj}: pid {pid} maps no such library",
        hint="give the library's path (with `run`, the command has not loaded its libraries yet) "
        "or the name of a library the process maps (jemalloc)",
    )


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


def _probe_hint(stderr: str) -> str:
    text = stderr.lower()
    if "kernel headers" in text or "failed to compile bpf module" in text:
        return tools.SETUP_HINT + "; `leakhunt doctor` checks the headers"
    if "tracefs" in text or "debugfs" in text:
        return "mount tracefs: mount -t tracefs nodev /sys/kernel/tracing"
    if "error attaching probe" in text or "invalid argument" in text:
        return (
            "another eBPF tool may hold a uprobe on the same allocator function (the kernel refuses "
            "a second one with different settings, see dmesg 'ref_ctr_offset mismatch'): stop it, "
            "or try the other --backend"
        )
    if "operation not permitted" in text or "permission" in text:
        return "run as root; in a container, it needs CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON)"
    return "run `leakhunt doctor` to check this host"
