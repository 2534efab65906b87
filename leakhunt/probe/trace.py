"""Live per-call tracing for ``leakhunt trace``: every allocation and free of one process.

Two backends print one line per allocator call:

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

import contextlib
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from leakhunt import __version__, sample
from leakhunt.analyze.trace import SORT_WINDOW_S, TraceMatcher, TraceSummary
from leakhunt.errors import ProbeFailed, TargetError, ToolMissing, UsageError
from leakhunt.model import BackendInfo, BackendName, Target, TraceProcess, TraceResult
from leakhunt.parse import ParseStats
from leakhunt.parse.trace import TraceParser
from leakhunt.probe import live, runner, scriptgen, tools
from leakhunt.probe.session import choose_backend  # the same choice as investigate's

ATTACHED_PREFIX = "leakhunt: tracing pid"
_LOST_ON_STDERR = re.compile(r"^Lost (\d{1,20}) events$", re.M)
ATTACH_RETRY_S = 90.0  # keep retrying an attach refused because of another tracer this long
ATTACH_RETRY_PAUSE_S = 3.0
BACKLOG_QUIET_S = 1.0  # the tracer is caught up once it printed nothing for this long...
BACKLOG_MAX_S = 15.0  # ...or after this much reading at the end at most (the target exited)
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
    choice = choose_backend(opts.backend, allow_native=False)
    if choice.warning and say is not None:
        say(f"WARNING: {choice.warning}")
    if choice.name == "bcc" and choice.tool.flavor == "libbpf":
        raise ToolMissing(
            "libbpf-tools' memleak prints no per-call trace",
            hint="install bpftrace (or BCC's Python memleak, memleak-bpfcc) and use --backend auto",
        )
    with runner.sigterm_as_interrupt():
        return _Trace(choice.name, choice.tool, choice.reason, opts, say or (lambda _: None)).run(
            pid, tuple(command) if command is not None else None
        )


class _Trace:
    def __init__(
        self, backend: str, tool: tools.Tool, reason: str, opts: TraceOptions, say: Callable[[str], None]
    ) -> None:
        self.backend = backend
        self.tool = tool
        self.reason = reason
        self.opts = opts
        self.say = say
        self.stats = ParseStats()
        self.parser = TraceParser(self.stats)
        self.matcher = TraceMatcher(bucket_s=opts.bucket_s)
        self._sort_events()
        self.notes: list[str] = []
        self.raw: IO[str] | None = None
        self.target_pid = 0
        self.target_comm = ""
        self.seen_tids: set[int] = set()
        self.argv: tuple[str, ...] = ()
        self.probe: runner.Child | None = None  # the tracer running now (attach may restart it)
        self.exec_info: sample.ProcessInfo | None = None  # a launched command, once it exec'd

    # --- the run ----------------------------------------------------------------------------

    def run(self, pid: int | None, command: tuple[str, ...] | None) -> TraceResult:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        gate: runner.GatedCommand | None = None
        probe: runner.Child | None = None
        workdir = tempfile.mkdtemp(prefix="leakhunt-trace-")
        stop_reason = "duration"
        exit_code: int | None = None
        t0 = time.monotonic()
        try:
            if command is not None:
                gate = runner.GatedCommand(command)
                pid = gate.pid
                gate.wait_ready()
            assert pid is not None
            info = tools.check_pid(pid)
            self.target_pid, self.target_comm = pid, info.comm
            self.argv, env = self._command(pid, workdir)
            if self.opts.raw_path is not None:
                self.raw = _open_private(self.opts.raw_path)
            self._record(f"leakhunt: target pid {pid} comm {info.comm}")
            self._record(f"leakhunt: started_at {started_at}")
            self._record(f"leakhunt: host {socket.gethostname() or '-'} kernel {platform.release() or '-'}")
            probe = runner.Child(self.argv, env={**os.environ, **env}, name=os.path.basename(self.argv[0]))
            self.probe = probe
            try:
                probe = self._attach(probe, pid, gate, workdir)
                self.say(f"tracing pid {pid} ({info.comm}) with {self.backend} for {self.opts.duration:g} s")
                if gate is not None:
                    gate.release()
                t0 = time.monotonic()
                stop_reason = self._loop(probe, pid, info.create_time, gate, t0)
            except KeyboardInterrupt:
                stop_reason = "interrupted"
                self.notes.append("interrupted (Ctrl-C or SIGTERM): the report holds what was traced so far")
                probe = self.probe  # maybe restarted by _attach
            duration = time.monotonic() - t0
            # bpftrace stamps events with bpf_ktime_get_ns(), i.e. CLOCK_MONOTONIC: the end of the
            # trace on the events' clock, so that ages count up to now, not to the last event
            end_clock = time.monotonic() if self.backend == "bpftrace" else None
            self.say("stopping")
            # a target that exited goes quiet: wait for the tracer to catch up; a live one never does
            self._drain_backlog(probe, BACKLOG_MAX_S if stop_reason == "target-exited" else BACKLOG_LIVE_S)
            exit_ = live.stop_and_drain(probe, 5.0, self._line)
            if end_clock is not None:
                self._line(f"leakhunt: trace end {end_clock:.6f}")
            if exit_.killed:
                self.notes.append(f"{self.backend} did not stop on SIGINT and was killed")
            # newer bpftrace reports lost events on stderr, not among its output lines
            self.stats.lost_events += sum(int(n) for n in _LOST_ON_STDERR.findall(probe.stderr_text))
            if gate is not None:
                exit_code = gate.child.poll()
                if exit_code is None:
                    exit_code = gate.stop(grace=3.0).returncode
                    self.notes.append("the command was still running at the end and was stopped")
            if (
                self.matcher.events == 0
                and exit_.returncode not in (0, -2, 130)
                and stop_reason == "duration"
            ):
                raise ProbeFailed(
                    f"{self.backend} ended with {exit_.describe()} before tracing anything",
                    stderr=probe.stderr_text,
                )
        finally:
            live.stop_leftovers((probe, self.probe), gate)
            if self.raw is not None:
                self.raw.close()
            shutil.rmtree(workdir, ignore_errors=True)
        if self.exec_info is not None:
            info = self.exec_info
        target = live.target(pid, info, command, exit_code=exit_code, stop_reason=stop_reason)
        name: BackendName = "bcc" if self.backend == "bcc" else "bpftrace"
        backend = BackendInfo(name, self.tool.path, self.tool.version, self.argv, self.reason)
        return build_result(
            self.matcher.summary(older_than_s=self.opts.older_than_ms / 1000, end_time=self.parser.end_time),
            self.stats,
            target=target,
            backend=backend,
            started_at=started_at,
            duration_s=duration,
            stop_reason=stop_reason,
            notes=self.notes,
            # memleak's trace pipe carries other tracers' lines: keep the target's; bpftrace's
            # script filters in the kernel and also traces the target's children
            only_pid=pid if self.backend == "bcc" else None,
        )

    def _command(self, pid: int, workdir: str) -> tuple[tuple[str, ...], dict[str, str]]:
        if self.backend == "bcc":
            return (self.tool.path, "-p", str(pid), "-t"), {"PYTHONUNBUFFERED": "1"}
        script = render_trace_script(pid, _libc(pid))
        path = os.path.join(workdir, "trace.bt")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # an earlier attempt's (workdir is our own mkdtemp)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(script)
        return (self.tool.path, path), {}

    def _attach(
        self, probe: runner.Child, pid: int, gate: runner.GatedCommand | None, workdir: str
    ) -> runner.Child:
        """Wait until ``probe`` is attached; start it again when another tracer was in the way.

        BCC 0.26 registers its uprobes with a reference-counter offset and bpftrace without one;
        the kernel refuses a second uprobe on the same instruction that differs in it ("ref_ctr_offset
        mismatch" in dmesg, EINVAL to the tool), so the two cannot probe malloc/free at the same
        time. With --backend auto the other tracer is tried at once (it shares with its own kind);
        otherwise the attach is retried for ATTACH_RETRY_S.
        """
        give_up = time.monotonic() + ATTACH_RETRY_S
        switched = False
        while True:
            try:
                self._wait_attached(probe, pid, gate)
                return probe
            except ProbeFailed as err:
                if time.monotonic() > give_up or not _attach_conflict(err.stderr):
                    raise
            probe.stop(grace=2.0)
            other = _other_backend(self.backend) if self.opts.backend == "auto" and not switched else None
            if other is not None:
                switched = True
                self.notes.append(
                    f"{self.backend} could not attach: another tracer holds an incompatible probe on "
                    f"the same function; traced with {other[0]} instead"
                )
                self.say(f"{self.backend} could not attach (another tracer in the way); trying {other[0]}")
                self.backend, self.tool = other
                self._sort_events()
                self.reason = f"auto: {other[0]} ({self.notes[-1]})"
            else:
                note = (
                    f"{self.backend} could not attach at first (another tracer on the same function); retried"
                )
                if note not in self.notes:
                    self.notes.append(note)
                    self.say("another tracer holds a probe on the same function; retrying")
                time.sleep(ATTACH_RETRY_PAUSE_S)
            self.argv, env = self._command(pid, workdir)
            probe = runner.Child(self.argv, env={**os.environ, **env}, name=os.path.basename(self.argv[0]))
            self.probe = probe

    def _wait_attached(self, probe: runner.Child, pid: int, gate: runner.GatedCommand | None) -> None:
        watch = live.AttachWatch(
            probe,
            self.backend,
            pid,
            launched=gate is not None,
            timeout=live.attach_timeout(self.backend),
            hint=_hint,
            exit_status_in_message=False,
        )
        announced = False
        while True:
            line = probe.get_line(live.POLL)
            if line is not None:
                self._line(line)
                if self.backend == "bpftrace" and line.startswith(ATTACHED_PREFIX):
                    return  # printed by BEGIN, which runs once every probe is attached
                if self.backend == "bcc" and line.startswith("Attaching to pid"):
                    announced = True
            if announced and _reads_trace_pipe(probe.pid):
                return  # memleak opens the trace pipe only after attaching its uprobes
            watch.check()

    def _loop(
        self, probe: runner.Child, pid: int, create_time: float, gate: runner.GatedCommand | None, t0: float
    ) -> str:
        while True:
            now = time.monotonic() - t0
            if gate is not None and self.exec_info is None:
                after = sample.describe(pid)
                if after is not None and after.comm != "sh":  # the gate shell has exec'd the command
                    self.exec_info = after
                    self.target_comm = after.comm
            if now >= self.opts.duration:
                return "duration"
            alive = gate.child.poll() is None if gate is not None else live.same_process(pid, create_time)
            if not alive:
                self.notes.append(live.target_exit_note(now, self.opts.duration))
                return "target-exited"
            for line in probe.drain(min(live.POLL, max(self.opts.duration - now, 0.01))):
                self._line(line)
            if probe.eof or not probe.alive():
                self.notes.append(f"{self.backend} ended on its own after {now:.1f} s")
                return "error" if live.pid_alive(pid) else "target-exited"

    def _drain_backlog(self, probe: runner.Child, limit: float) -> None:
        """Read what the tracer still prints before stopping it: under load its output lags the
        target, and a tracer stopped at once drops the events of the target's last moments."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and probe.alive():
            line = probe.get_line(BACKLOG_QUIET_S)
            if line is None:
                return  # quiet: caught up
            self._line(line)

    # --- lines ------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        if self.backend == "bcc" and line.startswith("(") and "', " in line:
            self._map_thread(line)
        self._record(line)
        fields = self.parser.feed_fields(line)
        if fields is not None:
            self.matcher.event(fields)

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

    def _sort_events(self) -> None:
        # bpftrace delivers per-CPU runs of events late: sort them (memleak's trace pipe is ordered)
        self.matcher.sort_window_s = SORT_WINDOW_S if self.backend == "bpftrace" else 0.0

    def _record(self, line: str) -> None:
        if self.raw is not None:
            self.raw.write(line + "\n")


def build_result(
    summary: TraceSummary,
    stats: ParseStats,
    *,
    target: Target,
    backend: BackendInfo,
    started_at: str,
    duration_s: float,
    stop_reason: str,
    notes: Iterable[str] = (),
    only_pid: int | None = None,
    host: str | None = None,
    kernel: str | None = None,
) -> TraceResult:
    """A TraceResult from a matcher's summary (shared by live `trace` and `import`).

    ``host`` and ``kernel`` default to this machine's (a live run); an import passes what the log
    says, or "" (unknown), never the importing machine's.
    """
    processes: tuple[TraceProcess, ...] = summary.processes
    notes = list(notes)
    if only_pid is not None:
        others = [p for p in processes if p.pid != only_pid]
        processes = tuple(p for p in processes if p.pid == only_pid)
        if others:
            notes.append(
                f"{sum(p.alloc_count + p.free_count for p in others)} events of {len(others)} other "
                "process(es) interleaved in the trace pipe were left out"
            )
    unknown = sum(p.unknown_frees for p in processes)
    if backend.name == "bcc" and unknown:
        notes.append(
            f"{unknown} free(s) of blocks whose allocation is not in the trace: memleak prints only "
            "frees of blocks it saw allocated, so trace lines are missing (lost, or read by another "
            "trace_pipe reader)"
        )
    if summary.missed_frees:
        notes.append(
            f"{summary.missed_frees} allocation(s) reused an address still outstanding: "
            "their frees were lost (lost events?)"
        )
    if summary.merged_threads:
        notes.append(
            f"{summary.merged_threads} thread(s) were merged into their process because they freed "
            "each other's blocks (the trace names threads only)"
        )
    return TraceResult(
        target=target,
        backend=backend,
        started_at=started_at,
        duration_s=round(duration_s, 3),
        processes=processes,
        end_time=summary.end_time,
        rate=summary.rate,
        quality=stats.quality(notes=tuple(n for n in notes if n not in stats.notes)),
        stop_reason=stop_reason,
        kernel=platform.release() if kernel is None else kernel,
        host=socket.gethostname() if host is None else host,
        leakhunt_version=__version__,
    )


# --- helpers ------------------------------------------------------------------------------------


def _open_private(path: Path) -> IO[str]:
    """Open ``path`` for writing, readable by its owner only (a trace holds the target's addresses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", errors="replace")


def _thread_group(tid: int) -> int | None:
    """The process (Tgid) a thread belongs to, from /proc/TID/status; None when it is gone."""
    try:
        with open(f"/proc/{tid}/status", "rb") as fh:
            for raw in fh:
                if raw.startswith(b"Tgid:"):
                    return int(raw.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reads_trace_pipe(pid: int) -> bool:
    """True once ``pid`` holds the kernel trace pipe open (BCC's trace_fields() has started)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/trace_pipe"):
                return True
    return False


def _libc(pid: int) -> str:
    """The target's libc; a command just started at the gate may not have mapped it yet."""
    deadline = time.monotonic() + 3.0
    while True:
        try:
            return tools.target_libc(pid)
        except TargetError:
            if time.monotonic() > deadline or not live.pid_alive(pid):
                raise
            time.sleep(0.05)


def _other_backend(backend: str) -> tuple[str, tools.Tool] | None:
    """The other tracer, when it is installed and usable for tracing."""
    if backend == "bpftrace":
        memleak = tools.find_memleak()
        if memleak is not None and memleak.flavor != "libbpf" and tools.kernel_headers_dir() is not None:
            return "bcc", memleak
        return None
    bpftrace = tools.find_bpftrace()
    return ("bpftrace", bpftrace) if bpftrace is not None else None


def _attach_conflict(stderr: str) -> bool:
    """The tracer failed because of another tracer (it may work later, or the other backend now)."""
    text = stderr.lower()
    return (
        "cannot attach uprobe" in text
        or "error attaching probe" in text
        or "invalid argument" in text
        or _pipe_busy(stderr)
    )


def _pipe_busy(stderr: str) -> bool:
    # BCC's -t reads the kernel's trace_pipe, which takes one reader at a time
    return "resource busy" in stderr.lower() and "trace_pipe" in stderr


def _hint(stderr: str) -> str:
    text = stderr.lower()
    if "kernel headers" in text or "failed to compile bpf module" in text:
        return tools.SETUP_HINT
    if _pipe_busy(stderr):
        return (
            "another program reads the kernel's trace_pipe (a second `memleak -t`, `cat trace_pipe`); "
            "it takes one reader at a time: stop it, or use --backend bpftrace"
        )
    if _attach_conflict(stderr):
        return (
            "another tracer probes the same function in a way the kernel cannot share (dmesg shows "
            "'ref_ctr_offset mismatch': BCC and bpftrace on one function); retry when it ended, or "
            "use the same --backend as the other tracer"
        )
    return "run `leakhunt doctor` to check this host"


def render_trace_script(pid: int, lib: str) -> str:
    """The bpftrace trace script for ``pid`` probing ``lib`` (scripts/capture_fixtures.sh uses it)."""
    # free has its own probe in the template; the others are probed when lib defines them
    funcs = tuple(scriptgen.identifier(f) for f in tools.allocator_functions(lib) if f != "free")
    return scriptgen.render_probe(
        "trace",
        pid=scriptgen.positive_int(pid, "pid"),
        lib=scriptgen.safe_path(lib, "the target's C library"),
        funcs=funcs,
    )
