"""The BCC backend: the stock memleak tool with matching options.

    PYTHONUNBUFFERED=1 memleak-bpfcc -p PID [-z MIN] [-Z MAX] [-s N] [-o MS] [-T N] [-O OBJ]
                                     [--symbols-prefix je_] INTERVAL
    PYTHONUNBUFFERED=1 memleak-bpfcc -p PID [-O OBJ] -t  (leakhunt trace: one line per call)

``-O`` names the allocator object detected by ``leakhunt.probe.allocator`` unless it is the C library
(memleak's default). memleak hooks a fixed list of C functions: an allocator's C++ operator new
is not among them (tcmalloc's never calls malloc), which the data quality says. BCC before 0.29
also needs mmap and munmap in that object (jemalloc and mimalloc define neither): memleak would fail
to attach, so leakhunt refuses with a clear message instead.

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
import re
from dataclasses import dataclass

from leakhunt import procfs
from leakhunt.errors import ToolMissing, UsageError
from leakhunt.model import AllocatorInfo, BackendName
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.memleak import MemleakParser, stopped_while_printing
from leakhunt.probe import allocator as allocators
from leakhunt.probe import tools
from leakhunt.probe.backend import BaseBackend, ProbeCommand, ProbeOptions, backend_info

# Syscall numbers of the sleeps Python's time.sleep() may block in, per architecture.
_SLEEP_SYSCALLS = {
    "x86_64": {35, 230, 23, 270},  # nanosleep, clock_nanosleep, select, pselect6
    "aarch64": {101, 115, 72},  # nanosleep, clock_nanosleep, pselect6
}


@dataclass(frozen=True)
class Support:
    """What the installed memleak can hook (read from its own source: BCC's tool is a script)."""

    symbols_prefix: bool  # --symbols-prefix (BCC >= 0.29, libbpf-tools -S)
    needs_mmap: bool  # mmap and munmap must be in the -O object (BCC < 0.29)


# the functions BCC's memleak attaches without can_fail: it stops when one is missing
_REQUIRED = ("malloc", "calloc", "realloc", "posix_memalign", "memalign", "free")
_HOOKED = frozenset((*_REQUIRED, "valloc", "pvalloc", "aligned_alloc"))


def support(tool: tools.Tool) -> Support:
    """What ``tool`` can do, from its source (a Python script) or, for libbpf-tools, its flavor."""
    if tool.flavor == "libbpf":
        return Support(symbols_prefix=True, needs_mmap=False)
    try:
        with open(tool.path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(200_000)
    except OSError:
        return Support(symbols_prefix=False, needs_mmap=True)
    return Support(
        symbols_prefix="--symbols-prefix" in text,
        needs_mmap=re.search(r"""attach_probes\(\s*["']mmap["']\s*,\s*can_fail\s*=\s*True""", text) is None,
    )


def check_allocator(tool: tools.Tool, alloc: AllocatorInfo, lib: str) -> tuple[str, ...]:
    """Refuse an allocator the installed memleak cannot probe; return notes on what it misses.

    Raises ToolMissing (exit 2, with the way out) when memleak would fail to attach.
    """
    can = support(tool)
    way_out = "use --backend bpftrace, which hooks every function of the allocator"
    if alloc.prefix and not can.symbols_prefix:
        raise ToolMissing(
            f"{tool.path} {tool.version} cannot probe {alloc.name} with prefixed names "
            f"({alloc.prefix}malloc): it has no --symbols-prefix",
            hint=way_out,
        )
    elf = allocators.read_elf(lib)
    defined = set(elf.functions) if elf is not None else set()
    required = [alloc.prefix + name for name in _REQUIRED]
    if can.needs_mmap:
        required += ["mmap", "munmap"]
    missing = [name for name in required if name not in defined]
    if missing:
        raise ToolMissing(
            f"{tool.path} {tool.version} cannot probe {alloc.name} in {alloc.path}: it attaches "
            f"{', '.join(missing)} there, which {os.path.basename(alloc.path)} does not define"
            + (" (BCC before 0.29 needs mmap and munmap in the allocator object)" if can.needs_mmap else ""),
            hint=way_out,
        )
    unhooked = [h.symbol for h in alloc.hooks if h.symbol.removeprefix(alloc.prefix) not in _HOOKED]
    notes: list[str] = []
    cxx = [s for s in unhooked if s.startswith("_Z")]
    if cxx:
        notes.append(
            f"memleak hooks only the C allocator functions: {alloc.name}'s C++ operator new/delete "
            f"({len(cxx)} functions, e.g. {cxx[0]}) are not probed, so blocks allocated with new are "
            f"not seen: {way_out}"
        )
    other = [s for s in unhooked if not s.startswith("_Z")]
    if other:
        notes.append(
            f"memleak does not hook {', '.join(other[:6])}{' ...' if len(other) > 6 else ''} "
            f"of {alloc.name}: blocks allocated through them are not seen"
        )
    return tuple(notes)


def argv_for(
    tool: tools.Tool,
    pid: int,
    options: ProbeOptions,
    alloc: AllocatorInfo | None = None,
    lib: str | None = None,
) -> tuple[str, ...]:
    """memleak's command line for ``pid`` with leakhunt's options mapped to its flags.

    ``alloc``/``lib``: the allocator to hook and its path as this host opens it (-O when it is
    not the C library, which memleak finds itself; --symbols-prefix for a prefixed build).
    """
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
    if alloc is not None and lib is not None:
        # memleak finds the C library by name only in our own root: a jailed target's is passed
        if options.obj is not None or alloc.name not in ("glibc", "musl") or lib != alloc.path:
            argv += ["-O", lib]
        if alloc.prefix:
            argv += ["--symbols-prefix", alloc.prefix]
    elif options.obj is not None:
        argv += ["-O", options.obj]
    argv.append(str(interval))
    return tuple(argv)


@dataclass(frozen=True)
class MemleakBackend(BaseBackend):
    """BCC's memleak (or libbpf-tools' build of it) (see ``leakhunt.probe.backend.Backend``)."""

    name: BackendName = "bcc"
    attach_timeout: float = 120.0  # BCC compiles its BPF program with clang first: slow on a busy host
    trace_shared_pipe: bool = True  # the global trace pipe: other tracers' lines, threads by tid only

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,
    ) -> ProbeCommand:
        """memleak printing its outstanding allocations every interval, hooking ``allocator``."""
        if pid is None:
            raise UsageError("give a pid or a command")
        notes: tuple[str, ...] = ()
        lib: str | None = None
        if allocator is not None:
            lib = tools.allocator_path(pid, allocator, launched=launched)
            notes = check_allocator(self.tool, allocator, lib)
        elif options.obj:
            tools.object_path(pid, options.obj)  # validate early; memleak takes the name as given
        argv = argv_for(self.tool, pid, options, allocator, lib)
        return ProbeCommand(
            info=backend_info(self, argv),
            argv=argv,
            env=(("PYTHONUNBUFFERED", "1"),),
            new_parser=parser,
            attached=Attach().check if self.tool.flavor != "libbpf" else _libbpf_attached,
            notes=notes,
            cut_last_block=stopped_while_printing if self.tool.flavor != "libbpf" else None,
        )

    def trace(
        self, pid: int, *, script_path: str, launched: bool, allocator: AllocatorInfo | None = None
    ) -> ProbeCommand:
        """``memleak -p PID -t``: one line per allocator call, from the kernel's trace pipe."""
        if self.tool.flavor == "libbpf":
            raise ToolMissing(
                "libbpf-tools' memleak prints no per-call trace",
                hint="install bpftrace (or BCC's Python memleak, memleak-bpfcc) and use --backend auto",
            )
        extra: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        if allocator is not None:
            lib = tools.allocator_path(pid, allocator, launched=launched)
            notes = check_allocator(self.tool, allocator, lib)
            if allocator.name not in ("glibc", "musl") or lib != allocator.path:
                extra += ("-O", lib)
            if allocator.prefix:
                extra += ("--symbols-prefix", allocator.prefix)
        argv = (self.tool.path, "-p", str(pid), *extra, "-t")
        return ProbeCommand(
            info=backend_info(self, argv),
            argv=argv,
            env=(("PYTHONUNBUFFERED", "1"),),
            attached=_TraceAttach().check,
            notes=notes,
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
        fds = procfs.listdir(pid, "fd")
    except procfs.ProcError:
        return False
    for fd in fds:
        with contextlib.suppress(procfs.ProcError):
            if procfs.readlink(pid, f"fd/{fd}").endswith("/trace_pipe"):
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
        nr = procfs.parse_syscall_number(procfs.read_text(pid, "syscall"))
    except procfs.ProcError:
        nr = None
    if nr is not None:
        return nr in _SLEEP_SYSCALLS.get(platform.machine(), set())
    # /proc/PID/syscall needs CONFIG_HAVE_ARCH_TRACEHOOK; wchan is the fallback
    try:
        return "nanosleep" in procfs.read_text(pid, "wchan")
    except procfs.ProcError:
        return False


__all__ = ["Attach", "MemleakBackend", "argv_for", "check_allocator", "parser", "sleeping", "support"]
