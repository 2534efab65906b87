"""Kernel mode (``investigate --kernel``): the kernel's own outstanding allocations per kernel stack.

bpftrace backend: templates/probe/kernel.bt.j2 on the kmem/percpu tracepoints, optionally only
for the allocations one process makes::

    bpftrace -f json /tmp/leakhunt-XXXX/kernel.bt

BCC backend: memleak without ``-p`` traces the same tracepoints (kmalloc, kmem_cache, pages; with
``--percpu`` percpu allocations *instead*) for every task; it cannot filter by process::

    PYTHONUNBUFFERED=1 memleak-bpfcc [-z MIN] [-Z MAX] [-s N] [-o MS] -T N INTERVAL

Both print the same protocol as the allocator probes (leakhunt.parse reads them unchanged); kernel
frames are named from /proc/kallsyms by the tools themselves.

Kernel-wide tracing sees the whole host: with no pid, every task's allocations compete in the
ranking. Frees are matched by address whoever frees, so an object freed by an RCU callback or a
worker still counts as freed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from leakhunt.errors import UsageError
from leakhunt.model import AllocatorInfo, BackendInfo
from leakhunt.probe import bpftrace as bpftrace_backend
from leakhunt.probe import memleak as memleak_backend
from leakhunt.probe import scriptgen, tools
from leakhunt.probe.backend import BaseBackend, ProbeCommand, ProbeOptions

STACK_DEPTH = 32  # kernel stacks: the syscall entry is within ~20 frames of the allocator
ATTACHED_MARKER = bpftrace_backend.ATTACHED_MARKER


def render_script(
    pid: int | None, options: ProbeOptions, armer: int | None = None, *, launched: bool = False
) -> str:
    """The bpftrace program tracing kernel allocations (of process ``pid`` only, when given).

    Accounting starts when process ``armer`` (default: this one) sends signal 0 to ``pid`` (or to
    itself when no pid is given), or at exec for a ``launched`` command.
    """
    me = armer if armer is not None else os.getpid()
    if launched and pid is None:
        raise UsageError("a launched command needs its pid")
    return scriptgen.render_probe(
        "kernel",
        pid=scriptgen.positive_int(pid or 0, "pid", allow_zero=True),
        armer=scriptgen.positive_int(me, "armer pid"),
        arm_pid=scriptgen.positive_int(pid if pid else me, "arm pid"),
        arm_on_exec=launched,
        interval_ms=scriptgen.positive_int(round(options.interval * 1000), "--interval (ms)"),
        min_size=scriptgen.positive_int(options.min_size or 0, "--min-size", allow_zero=True),
        max_size=scriptgen.positive_int(options.max_size or 0, "--max-size", allow_zero=True),
        sample_rate=scriptgen.positive_int(options.sample_rate, "--sample-rate"),
        pages=options.kernel_pages,
        percpu=True,
        page_size=scriptgen.positive_int(os.sysconf("SC_PAGE_SIZE"), "page size"),
        stack_depth=STACK_DEPTH,
    )


def bpftrace_command(
    tool: tools.Tool,
    pid: int | None,
    options: ProbeOptions,
    *,
    script_path: str,
    reason: str,
    launched: bool = False,
) -> ProbeCommand:
    """The bpftrace command running the kernel script ``run_live`` writes at ``script_path``."""
    if options.older_than_ms:
        raise UsageError(
            "--older-than is not supported by the bpftrace backend in kernel mode",
            hint="leave it out, or use --backend bcc (memleak's -o)",
        )
    script = render_script(pid, options, launched=launched)
    argv = (tool.path, "-f", "json", script_path)
    me = os.getpid()

    def arm(_pid: int) -> None:
        # signal 0 to the target (or to leakhunt itself when tracing every task): the script's
        # sys_enter_kill probe sees it and starts counting
        os.kill(pid if pid else me, 0)

    # kernel stacks are named from /proc/kallsyms: no per-process symbol cache
    return bpftrace_backend.json_command(
        tool,
        argv,
        options,
        reason=reason,
        script=script,
        script_path=script_path,
        arm=None if launched else arm,
        one_pid=False,
        max_tracked=options.map_keys,
    )


def memleak_argv(tool: tools.Tool, options: ProbeOptions) -> tuple[str, ...]:
    """memleak's command line for kernel allocations (no ``-p``: memleak then traces the kernel)."""
    if tool.flavor != "bcc":
        raise UsageError(
            f"{tool.path} is libbpf-tools' memleak; kernel mode uses BCC's memleak or bpftrace",
            hint="use --backend bpftrace",
        )
    argv = list(memleak_backend.argv_for(tool, 1, options))
    # argv_for builds "-p 1"; kernel mode is memleak without -p (and without -O: no user allocator)
    del argv[1:3]
    if "-O" in argv:
        raise UsageError("--obj names a user-space allocator; it has no meaning in kernel mode")
    return tuple(argv)


def memleak_command(tool: tools.Tool, options: ProbeOptions, reason: str) -> ProbeCommand:
    """The memleak command tracing every task's kernel allocations."""
    argv = memleak_argv(tool, options)
    return ProbeCommand(
        info=BackendInfo(name="bcc", tool=tool.path, version=tool.version, argv=argv, reason=reason),
        argv=argv,
        env=(("PYTHONUNBUFFERED", "1"),),
        new_parser=memleak_backend.parser,
        attached=memleak_backend.Attach(greeting="Attaching to kernel allocators").check,
    )


@dataclass(frozen=True)
class KernelBackend(BaseBackend):
    """Kernel mode on bpftrace or BCC's memleak (see ``leakhunt.probe.backend.Backend``): the same
    tools as the allocator probes, with tracepoints instead of uprobes (``name`` says which tool;
    tracepoints filter by pid: no host-wide cost)."""

    trace_refusal: ClassVar[str] = "kernel mode has no per-call trace"

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,  # not used: no allocator is probed in this mode
    ) -> ProbeCommand:
        if self.name == "bcc":
            return memleak_command(self.tool, options, reason=self.reason)
        return bpftrace_command(
            self.tool, pid, options, script_path=script_path, reason=self.reason, launched=launched
        )


def check_options(options: ProbeOptions, backend: str, pid: int | None) -> None:
    """UsageError for option combinations kernel mode cannot honour with ``backend``."""
    if options.obj:
        raise UsageError("--obj names a user-space allocator; it has no meaning with --kernel")
    if backend == "bcc" and pid is not None:
        raise UsageError(
            "BCC's memleak cannot filter kernel allocations by process",
            hint="use --backend bpftrace for --kernel --pid, or leave --pid out",
        )


__all__ = [
    "KernelBackend",
    "bpftrace_command",
    "check_options",
    "memleak_argv",
    "memleak_command",
    "render_script",
]
