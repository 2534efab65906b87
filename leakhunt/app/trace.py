"""The trace job for ``leakhunt trace``: every allocation and free of one process.

``leakhunt.probe.live.run_live`` runs the tool; two backends print one line per allocator call:

- BCC: ``memleak -p PID -t`` (Python tuples from the global trace pipe: other processes' lines
  interleave, and threads are named by thread id only);
- bpftrace: templates/probe/trace.bt.j2 (``A``/``F`` lines that carry the process id as well).

Lines go through ``leakhunt.parse.trace`` into ``leakhunt.analyze.trace.TraceMatcher`` as they
arrive, so memory grows with the outstanding allocations, not with the trace's length. With
``raw_path`` the tool's output is saved too, with ``leakhunt:`` lines that say which process each
thread belongs to (resolved live from /proc), so that ``leakhunt import`` of the file gives the same
result as the live run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leakhunt import procfs, sample
from leakhunt.analyze.trace import SORT_WINDOW_S, TraceMatcher
from leakhunt.app.common import run_info
from leakhunt.app.tracefeed import build_result
from leakhunt.errors import UsageError
from leakhunt.interrupt import sigterm_as_interrupt
from leakhunt.model import AllocatorInfo, TraceResult
from leakhunt.outputfile import OutputFile
from leakhunt.parse import ParseStats
from leakhunt.parse.trace import TraceParser
from leakhunt.probe import allocator, tools
from leakhunt.probe.backend import Backend, ProbeCommand
from leakhunt.probe.choose import choose_backend, other_backend
from leakhunt.probe.live import LivePolicy, LiveRun, run_live

_LOST_ON_STDERR = re.compile(r"^Lost (\d{1,20}) events$", re.M)
ATTACH_RETRY_S = 90.0  # keep retrying an attach refused because of another tracer this long
BACKLOG_MAX_S = 15.0  # read the tracer's backlog this long at most at the end (the target exited)
BACKLOG_LIVE_S = 2.0  # the same when the target still runs (it may allocate forever)


@dataclass(frozen=True)
class TraceOptions:
    """How to trace: ``duration`` seconds; report blocks older than ``older_than_ms`` at the end."""

    duration: float = 10.0
    older_than_ms: int = 0
    backend: str = "auto"  # auto | bpftrace | bcc
    bucket_s: float = 1.0  # width of the allocation-rate buckets
    raw_path: Path | None = None  # save the tool's raw output here (for `leakhunt import`)


def run_trace(
    pid: int | None = None,
    *,
    command: Sequence[str] | None = None,
    options: TraceOptions | None = None,
    say: Callable[[str], None] | None = None,
) -> TraceResult:
    """Trace a running process (``pid``) or a command started here (``command``).

    Raises LeakhuntError subclasses for problems before tracing starts. Once it has started, any
    stop (duration, target exit, Ctrl-C, SIGTERM) returns a TraceResult with what was seen.
    ``say`` receives one-line progress messages ("attached", "stopping").
    """
    opts = options or TraceOptions()
    if opts.duration <= 0:
        raise UsageError("--duration must be > 0")
    if opts.older_than_ms < 0:
        raise UsageError("--older-than must be >= 0")
    if (pid is None) == (command is None):
        raise UsageError("give either a pid or a command after --")
    tools.require_root()
    chosen = choose_backend(opts.backend, allow_native=False)
    job = _Trace(opts, say or (lambda _: None), tuple(command) if command is not None else None)
    if chosen.warning:
        job.say(f"WARNING: {chosen.warning}")
    policy = LivePolicy(
        stop_grace=5.0,
        attach_retry_s=ATTACH_RETRY_S,
        switch=_other_tracer if opts.backend == "auto" else None,
        backlog_s=(BACKLOG_MAX_S, BACKLOG_LIVE_S),
        say=job.say,
    )
    try:
        with sigterm_as_interrupt():
            run = run_live(
                chosen, job, pid=pid, command=tuple(command) if command is not None else None, policy=policy
            )
    finally:
        job.close()
    return job.result(run)


def _other_tracer(backend: Backend) -> Backend | None:
    """The other tracer (BCC or bpftrace: the native backend does not trace)."""
    return other_backend(backend, ("bcc", "bpftrace"))


class _Trace:
    """The trace job run by ``run_live``: match every traced call as it arrives."""

    def __init__(
        self, opts: TraceOptions, say: Callable[[str], None], launch: tuple[str, ...] | None = None
    ) -> None:
        self.opts = opts
        self.launch = launch  # the command leakhunt starts (None: a running pid)
        self.allocator: AllocatorInfo | None = None
        self.duration = opts.duration
        self.say = say
        self.stats = ParseStats()
        self.parser = TraceParser(self.stats)
        self.matcher = TraceMatcher(bucket_s=opts.bucket_s)
        self.notes: list[str] = []
        self.raw: OutputFile | None = None
        self.backend: Backend | None = None
        self.target_pid = 0
        self.target_comm = ""
        self.seen_tids: set[int] = set()
        self.end_clock: float | None = None

    # --- LiveJob ----------------------------------------------------------------------------

    def begin(self, pid: int | None, info: sample.ProcessInfo, started_at: str) -> None:
        assert pid is not None
        self.target_pid, self.target_comm = pid, info.comm
        if self.opts.raw_path is not None:
            self.raw = _open_private(self.opts.raw_path)
        self._record(f"leakhunt: target pid {pid} comm {info.comm}")
        self._record(f"leakhunt: started_at {started_at}")
        here = run_info(started_at, 0.0, "duration")  # this machine, as the live result will say
        self._record(f"leakhunt: host {here.host or '-'} kernel {here.kernel or '-'}")

    def command(self, backend: Backend, pid: int | None, *, script_path: str, launched: bool) -> ProbeCommand:
        assert pid is not None
        self.backend = backend
        # events delivered late in per-CPU runs are sorted (memleak's trace pipe is ordered)
        self.matcher.sort_window_s = SORT_WINDOW_S if backend.trace_events_unordered else 0.0
        if self.allocator is None:  # once: an attach retried with the other tracer keeps it
            self.allocator = allocator.detect(pid, self.launch if launched else None, None)
            self.say(f"allocator {self.allocator.describe()}")
        cmd = backend.trace(pid, script_path=script_path, launched=launched, allocator=self.allocator)
        self.notes.extend(n for n in cmd.notes if n not in self.notes)
        return cmd

    def attaching(self, elapsed: float) -> None:
        pass

    def started(self, pid: int | None, info: sample.ProcessInfo) -> None:
        assert self.backend is not None
        self.target_comm = info.comm  # a launched command, once it exec'd
        self.say(f"tracing pid {pid} ({info.comm}) with {self.backend.name} for {self.opts.duration:g} s")

    def tick(self, now: float) -> bool:
        return now >= self.opts.duration

    def target_gone(self, now: float) -> None:
        pass

    def stopping(self, now: float) -> None:
        assert self.backend is not None
        # bpftrace stamps events with bpf_ktime_get_ns(), i.e. CLOCK_MONOTONIC: the end of the
        # trace on the events' clock, so that ages count up to now, not to the last event
        if self.backend.trace_monotonic_clock:
            self.end_clock = time.monotonic()
        self.say("stopping")

    def finish(self, stderr: str) -> None:
        if self.end_clock is not None:
            self.feed(f"leakhunt: trace end {self.end_clock:.6f}")
        # newer bpftrace reports lost events on stderr, not among its output lines
        self.stats.lost_events += sum(int(n) for n in _LOST_ON_STDERR.findall(stderr))

    def gathered(self) -> bool:
        return self.matcher.events > 0

    def feed(self, line: str) -> None:
        assert self.backend is not None
        if self.backend.trace_shared_pipe and line.startswith("(") and "', " in line:
            self._map_thread(line)
        self._record(line)
        fields = self.parser.feed_fields(line)
        if fields is not None:
            self.matcher.event(fields)

    # --- lines ------------------------------------------------------------------------------

    def _map_thread(self, line: str) -> None:
        """memleak names threads only: find each new thread's process while it still lives."""
        parts = line.split(", ", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            return
        tid = int(parts[1])
        if tid in self.seen_tids or tid == 0:
            return
        self.seen_tids.add(tid)
        tgid = _thread_group(tid)
        if tgid is None:
            # gone already: a thread of the target if it bore the target's name (memleak -p
            # only traces the target; other processes' lines come from other tracers)
            task = parts[0].lstrip("(").lstrip("b").strip("'\"")
            tgid = self.target_pid if task == self.target_comm[:15] else tid
        note = f"leakhunt: tid {tid} pid {tgid}"
        self._record(note)
        self.parser.feed_fields(note)

    def _record(self, line: str) -> None:
        if self.raw is not None:
            self.raw.write(line + "\n")

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()

    # --- result -----------------------------------------------------------------------------

    def result(self, run: LiveRun) -> TraceResult:
        return build_result(
            self.matcher.summary(older_than_s=self.opts.older_than_ms / 1000, end_time=self.parser.end_time),
            self.stats,
            target=run.target,
            backend=run.info,
            run=run_info(run.started_at, run.duration_s, run.stop_reason),
            notes=self.notes,
            # a shared trace pipe carries other tracers' lines: keep the target's; bpftrace's
            # script filters in the kernel and also traces the target's children
            only_pid=run.target.pid if run.backend.trace_shared_pipe else None,
            allocator=self.allocator,
        )


# --- helpers ------------------------------------------------------------------------------------


def _open_private(path: Path) -> OutputFile:
    """The raw trace file, readable by its owner only (a trace holds the target's addresses).

    Written beside ``path`` and renamed onto it when closed: a symlink planted at ``path`` in a
    shared folder is replaced, never followed (leakhunt runs as root).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--save-raw {path}: cannot create its folder ({err.strerror})") from None
    return OutputFile(path)


def _thread_group(tid: int) -> int | None:
    """The process (Tgid) a thread belongs to, from /proc/TID/status; None when it is gone."""
    try:
        return procfs.status_int(procfs.read_bytes(tid, "status"), "Tgid")
    except procfs.ProcError:
        return None
