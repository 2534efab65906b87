"""The BCC backend: the stock memleak tool with matching options.

    PYTHONUNBUFFERED=1 memleak-bpfcc -p PID [-z MIN] [-Z MAX] [-s N] [-o MS] [-T N] [-O OBJ] INTERVAL

Output to a pipe is block-buffered unless PYTHONUNBUFFERED=1; memleak is stopped with SIGINT.

When is it attached? BCC's memleak prints "Attaching to pid N, Ctrl+C to quit." *before* it
attaches its uprobes (tools/memleak.py: the print precedes the attach_uprobe calls), and its first
periodic block comes one interval later. After the last attach it enters ``sleep(interval)``:
its main thread blocked in (clock_)nanosleep after the "Attaching" line means every uprobe is in.
That is what ``attached()`` checks in /proc, with the first periodic header as a fallback.
"""

from __future__ import annotations

import platform

from leakhunt.model import BackendInfo
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.memleak import MemleakParser
from leakhunt.probe import tools
from leakhunt.probe.backend import ProbeCommand, ProbeOptions

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


def command(tool: tools.Tool, pid: int, options: ProbeOptions, reason: str) -> ProbeCommand:
    """The memleak command for ``pid``."""
    argv = argv_for(tool, pid, options)
    env = {"PYTHONUNBUFFERED": "1"}
    return ProbeCommand(
        info=BackendInfo(name="bcc", tool=tool.path, version=tool.version, argv=argv, reason=reason),
        argv=argv,
        env=tuple(env.items()),
        new_parser=parser,
        attached=Attach().check if tool.flavor != "libbpf" else _libbpf_attached,
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


__all__ = ["Attach", "argv_for", "command", "parser", "sleeping"]
