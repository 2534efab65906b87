"""The BCC backend: the stock memleak tool with matching options.

    PYTHONUNBUFFERED=1 memleak-bpfcc -p PID [-z MIN] [-Z MAX] [-s N] [-o MS] [-T N] [-O OBJ] INTERVAL
    PYTHONUNBUFFERED=1 memleak-bpfcc -p PID -t          (leakhunt trace: one line per call)

Output to a pipe is block-buffered unless PYTHONUNBUFFERED=1; memleak is stopped with SIGINT.

When is it attached? BCC's memleak prints "Attaching to pid N, Ctrl+C to quit." *before* it
attaches its uprobes (tools/memleak.py: the print precedes the attach_uprobe calls), and its first
periodic block comes one interval later. After the last attach it enters ``sleep(interval)``:
its main thread blocked in (clock_)nanosleep after the "Attaching" line means every uprobe is in.
That is what ``attached()`` checks in /proc, with the first periodic header as a fallback.
With ``-t`` it prints the same line, then opens the kernel's trace pipe once its uprobes are in.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, replace

from leakhunt.errors import ToolMissing, UsageError
from leakhunt.model import BackendName
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.memleak import MemleakParser
from leakhunt.probe import tools
from leakhunt.probe.backend import Backend, ProbeCommand, ProbeOptions, backend_info

# Syscall numbers of the sleeps Python's time.sleep() may block in, per architecture.
_SLEEP_SYSCALLS = {
    "x86_64": {35, 230, 23, 270},  # nanosleep, clock_nanosleep, select, pselect6
    "aarch64": {101, 115, 72},  # nanosleep, clock_nanosleep, pselect6
}


def argv_for(tool: tools.Tool, pid: int, options: ProbeOptions) -> tuple[str, ...]:
    """memleak's command line for ``pid`` with leakhunt's options mapped to its flags."""
    interval = max(1, round(options.interval))  # memleak takes whole seconds
    argv: list[str] = [tool.path, "-p", str(pid)]
    if options.min_size is not None:
        argv += ["-z", str(options.min_size)]
    if options.max_size is not None:
        argv += ["-Z", str(options.max_size)]
    if options.sample_rate > 1:
        argv += ["-s", str(options.sample_rate)]
    if options.older_than_ms is not None:
        argv += ["-o", str(options.older_than_ms)]
    # memleak prints only its top N stacks; ask for many so that a small leak is never cut off
    # behind big caches (leakhunt ranks them itself; --top only limits what leakhunt shows).
    argv += ["-T", str(max(options.top, 200))]
    if options.obj is not None:
        argv += ["-O", options.obj]
    argv.append(str(interval))
    return tuple(argv)


@dataclass(frozen=True)
class MemleakBackend:
    """BCC's memleak (or libbpf-tools' build of it) (see ``leakhunt.probe.backend.Backend``)."""

    tool: tools.Tool
    reason: str
    warning: str | None = None
    name: BackendName = "bcc"
    attach_timeout: float = 120.0  # BCC compiles its BPF program with clang first: slow on a busy host
    byte_sampling: bool = False  # --sample-bytes is the native backend's
    trace_events_unordered: bool = False  # the trace pipe is ordered
    trace_monotonic_clock: bool = False
    trace_shared_pipe: bool = True  # the global trace pipe: other tracers' lines, threads by tid only

    def with_reason(self, reason: str) -> Backend:
        return replace(self, reason=reason)

    def investigate(
        self, pid: int | None, options: ProbeOptions, *, script_path: str, launched: bool
    ) -> ProbeCommand:
        """memleak printing its outstanding allocations every interval."""
        if pid is None:
            raise UsageError("give a pid or a command")
        if options.obj:
            tools.object_path(pid, options.obj)  # validate early; memleak takes the name as given
        argv = argv_for(self.tool, pid, options)
        return ProbeCommand(
            info=backend_info(self, argv),
            argv=argv,
            env=(("PYTHONUNBUFFERED", "1"),),
            new_parser=parser,
            attached=Attach().check if self.tool.flavor != "libbpf" else _libbpf_attached,
        )

    def trace(self, pid: int, *, script_path: str, launched: bool) -> ProbeCommand:
        """``memleak -p PID -t``: one line per allocator call, from the kernel's trace pipe."""
        if self.tool.flavor == "libbpf":
            raise ToolMissing(
                "libbpf-tools' memleak prints no per-call trace",
                hint="install bpftrace (or BCC's Python memleak, memleak-bpfcc) and use --backend auto",
            )
        argv = (self.tool.path, "-p", str(pid), "-t")
        return ProbeCommand(
            info=backend_info(self, argv),
            argv=argv,
            env=(("PYTHONUNBUFFERED", "1"),),
            attached=_TraceAttach().check,
        )


def parser(stats: ParseStats) -> LineParser:
    """A parser of memleak's periodic blocks."""
    return MemleakParser(stats)


class Attach:
    """Attach detection for BCC's Python memleak (see the module docstring).

    ``greeting`` is the line memleak prints before attaching: "Attaching to pid N" for a process,
    "Attaching to kernel allocators" without -p.
    """

    def __init__(self, greeting: str = "Attaching to pid") -> None:
        self.greeting = greeting
        self.announced = False

    def check(self, line: str | None, stderr: str, pid: int) -> bool:
        if line is not None:
            if line.startswith(self.greeting):
                self.announced = True
            elif "stacks with outstanding allocations" in line:
                return True
        return self.announced and sleeping(pid)


class _TraceAttach:
    """memleak -t opens the trace pipe only after attaching its uprobes."""

    def __init__(self) -> None:
        self.announced = False

    def check(self, line: str | None, stderr: str, pid: int) -> bool:
        if line is not None and line.startswith("Attaching to pid"):
            self.announced = True
        return self.announced and reads_trace_pipe(pid)


def reads_trace_pipe(pid: int) -> bool:
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


def _libbpf_attached(line: str | None, stderr: str, pid: int) -> bool:
    # libbpf-tools' memleak prints this after attaching; a periodic header is proof as well.
    return line is not None and (
        "Tracing outstanding memory allocs" in line or "stacks with outstanding" in line
    )


def sleeping(pid: int) -> bool:
    """True when the main thread of ``pid`` is blocked in a sleep syscall."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as fh:
            first = fh.read().split(maxsplit=1)
    except OSError:
        first = []
    if first and first[0].lstrip("-").isdigit():
        return int(first[0]) in _SLEEP_SYSCALLS.get(platform.machine(), set())
    # /proc/PID/syscall needs CONFIG_HAVE_ARCH_TRACEHOOK; wchan is the fallback
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as fh:
            return "nanosleep" in fh.read()
    except OSError:
        return False


__all__ = ["Attach", "MemleakBackend", "argv_for", "parser", "sleeping"]
