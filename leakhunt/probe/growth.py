"""Growth mode (``investigate --mode growth``): which code makes the process's memory grow?

Every page a process touches for the first time takes a page fault; templates/probe/growth.bt.j2
counts them per user stack on the ``exceptions:page_fault_user`` tracepoint (pid-filtered), plus
the process's address-space growth through brk and anonymous mmap::

    bpftrace -f json -p PID /tmp/leakhunt-XXXX/growth.bt

Why it is nearly free: no uprobe. A malloc/free that reuses memory never enters the kernel; only a
new page does, and that page fault is paid anyway. Allocation probes cost microseconds on every
call (see scripts/bench_growth.py for the figures side by side).

What it proves and what it does not:
- a stack that keeps adding pages makes the process grow (memory touched, resident);
- it does not prove that memory is never freed: freed memory is reused without a new fault (so a
  leak that reuses freed memory of another stack is attributed to that other stack's first touch),
  and memory given back to the system (munmap, trimming) faults again when touched: a churning
  stack looks like growth. Confirm a stack with the allocation probes (--mode alloc).
- the stack is the one that *touched* the page: often the allocating function's caller writing
  into it, sometimes the allocator itself writing its headers (then the caller may be lost without
  frame pointers in libc).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from leakhunt.errors import UsageError
from leakhunt.model import AllocatorInfo, BackendName
from leakhunt.probe import bpftrace as bpftrace_backend
from leakhunt.probe import scriptgen, tools
from leakhunt.probe.backend import BaseBackend, ProbeCommand, ProbeOptions

STACK_DEPTH = 64
ATTACHED_MARKER = bpftrace_backend.ATTACHED_MARKER

# Said first in every growth-mode report (the report adds it as its mode note, too).
CAVEAT = (
    "growth mode counts pages touched for the first time, per stack: memory growth, not memory "
    "proven never freed (freed memory is reused without a fault; memory returned to the system "
    "faults again)"
)


def render_script(
    pid: int, options: ProbeOptions, armer: int | None = None, *, launched: bool = False
) -> str:
    """The bpftrace program counting first-touch page faults of ``pid`` per user stack."""
    return scriptgen.render_probe(
        "growth",
        pid=scriptgen.positive_int(pid, "pid"),
        armer=scriptgen.positive_int(armer if armer is not None else os.getpid(), "armer pid"),
        arm_on_exec=launched,
        interval_ms=scriptgen.positive_int(round(options.interval * 1000), "--interval (ms)"),
        page_size=scriptgen.positive_int(os.sysconf("SC_PAGE_SIZE"), "page size"),
        stack_depth=STACK_DEPTH,
    )


def check_options(options: ProbeOptions) -> None:
    """UsageError for allocation-probe options that mean nothing in growth mode."""
    given = [
        flag
        for flag, value in (
            ("--min-size", options.min_size),
            ("--max-size", options.max_size),
            ("--older-than", options.older_than_ms),
            ("--obj", options.obj),
        )
        if value is not None
    ]
    if options.sample_rate != 1:
        given.append("--sample-rate")
    if given:
        raise UsageError(
            f"{', '.join(given)} filter allocator calls; growth mode sees page faults, not calls",
            hint="leave them out, or use --mode alloc",
        )


def command(
    tool: tools.Tool,
    pid: int,
    options: ProbeOptions,
    *,
    script_path: str,
    reason: str,
    launched: bool = False,
) -> ProbeCommand:
    """The bpftrace command running the growth script ``run_live`` writes at ``script_path``."""
    check_options(options)
    script = render_script(pid, options, launched=launched)
    # -p: ustack frames of this process are named from its own maps (and cached once)
    argv = (tool.path, "-f", "json", "-p", str(pid), script_path)
    return bpftrace_backend.json_command(
        tool,
        argv,
        options,
        reason=reason,
        script=script,
        script_path=script_path,
        arm=None if launched else bpftrace_backend.arm,
        one_pid=True,
        notes=(CAVEAT,),
    )


@dataclass(frozen=True)
class GrowthBackend(BaseBackend):
    """Growth mode on bpftrace (see ``leakhunt.probe.backend.Backend``): page-fault tracepoints,
    filtered by pid (no host-wide cost)."""

    name: BackendName = "bpftrace"
    trace_refusal: ClassVar[str] = "growth mode has no per-call trace"

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,  # not used: no allocator is probed in this mode
    ) -> ProbeCommand:
        if pid is None:
            raise UsageError("growth mode needs a pid or a command")
        return command(
            self.tool, pid, options, script_path=script_path, reason=self.reason, launched=launched
        )


__all__ = ["CAVEAT", "GrowthBackend", "check_options", "command", "render_script"]
