"""The bpftrace backend: render templates/probe/{investigate,trace}.bt.j2 and the commands that run them.

    bpftrace -f json -p PID /tmp/leakhunt-XXXX/investigate.bt
    bpftrace /tmp/leakhunt-XXXX/trace.bt

Cost to other processes: bpftrace passes ``-p``'s pid to the kernel for uprobes in shared
libraries only since 0.20 (bpftrace#2830). Older versions (Debian 12 ships 0.17) attach the
malloc/free uprobes for *every* process that maps the library: the script's ``pid == N``
predicates keep other processes out of the maps, but only after each of their calls has trapped
(measured here: an unprobed malloc/free loop went from 13 ns to 7,252 ns per pair). So
``--backend auto`` never picks such a bpftrace (``choose.choose_backend``), and asking for it
by name prints that warning before attaching. The script
is written to a private temporary directory by ``run_live``. bpftrace reports "probes attached"
after attaching only when ``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` is set (stderr in <= 0.20,
stdout since); its own ``attached_probes`` event and BEGIN come *before* the uprobes are in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from leakhunt.errors import TargetError, UsageError
from leakhunt.model import AllocatorHook, AllocatorInfo, BackendInfo, BackendName
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.bpftrace import BpftraceParser, parse_gauge
from leakhunt.probe import allocator as allocators
from leakhunt.probe import placement, scriptgen, tools
from leakhunt.probe.backend import BaseBackend, ProbeCommand, ProbeOptions, backend_info

ATTACHED_MARKER = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"
END_MARKER = "leakhunt: end"  # investigate.bt.j2's END prints it first; only cleanup follows
_TIME_EVENT = re.compile(r'^\{"type": ?"time"')
TRACE_ATTACHED_PREFIX = "leakhunt: tracing pid"  # printed by trace.bt.j2's BEGIN, after every attach
STACK_DEPTH = 64  # frames kept per stack: the allocation site is innermost, outer frames matter less
# From 0.22, bpftrace attaches uprobes at an offset it cannot check (no libopcodes in distribution
# builds) when given --unsafe; leakhunt checks the offset itself (probe.placement).
OFFSET_VERSION = (0, 22)


def free_placement(tool: tools.Tool, lib: str) -> tuple[int, str]:
    """(offset of free's probe, note for the report). Offset 0 when this bpftrace cannot attach at
    an offset or no emulated instruction is safe to probe; the note then says why.

    Only free gets an offset: it has no return probe, so its entry probe is its only trap. An
    allocation function's entry probe shares the function's entry with its uretprobe, which traps
    there anyway (a second address would add a trap, not save one).
    """
    if tool.version_tuple < OFFSET_VERSION:
        return 0, ""  # the versions that cannot have always probed at the entry: nothing to say
    unsupported = placement.placement_supported()
    start = tools.elf_functions(lib).get("free")
    if unsupported or start is None:
        return 0, f"bpftrace probe on free at its entry: {unsupported or 'free not found'}"
    where = placement.place(placement.read_code(lib, start), frozenset({"rdi"}), address=start)
    if not where.emulated:
        return 0, (
            f"bpftrace probe on free at its entry ('{where.instruction or '?'}' is executed out of line: "
            f"each free traps twice): {where.reason}"
        )
    return where.offset, ""


def hooks_in(lib: str, hooks: tuple[AllocatorHook, ...] | None) -> tuple[scriptgen.Hook, ...]:
    """``hooks`` (or those ``lib`` defines) checked for a template; TargetError when they cannot work."""
    if hooks is None:
        elf = allocators.read_elf(lib)
        functions = elf.functions if elf is not None else {}
        hooks = allocators.hooks_for(functions, allocators.prefix_of(functions))
    roles = {h.role for h in hooks}
    if "free" not in roles or not roles - {"free"}:
        raise TargetError(
            f"{lib} defines no malloc or free",
            hint="pass --obj naming the library that holds the allocator (or the static binary)",
        )
    return tuple(scriptgen.hook(h) for h in hooks)


def render_script(
    pid: int,
    lib: str,
    options: ProbeOptions,
    armer: int | None = None,
    *,
    launched: bool = False,
    free_offset: int = 0,
    hooks: tuple[AllocatorHook, ...] | None = None,
) -> str:
    """The bpftrace program for ``pid`` probing the allocator in ``lib`` (a path this host opens).

    ``hooks`` are the functions to probe (``probe.allocator``); None = those ``lib`` defines. Each
    hooked function has its own number in the script, so an allocator function that calls or
    tail-jumps to another one (reallocarray -> realloc, operator new -> malloc) counts once.
    Accounting starts when process ``armer`` (default: this one) calls ``arm(pid)``, or, for a
    ``launched`` command held at a gate, when the gate execs the command.
    """
    checked = hooks_in(lib, hooks)
    interval_ms = scriptgen.positive_int(round(options.interval * 1000), "--interval (ms)")
    return scriptgen.render_probe(
        "investigate",
        pid=scriptgen.positive_int(pid, "pid"),
        armer=scriptgen.positive_int(armer if armer is not None else os.getpid(), "armer pid"),
        arm_on_exec=launched,
        lib=scriptgen.safe_path(lib, "allocator library"),
        hooks=checked,
        interval_ms=interval_ms,
        min_size=scriptgen.positive_int(options.min_size or 0, "--min-size", allow_zero=True),
        max_size=scriptgen.positive_int(options.max_size or 0, "--max-size", allow_zero=True),
        sample_rate=scriptgen.positive_int(options.sample_rate, "--sample-rate"),
        older_than_ns=scriptgen.positive_int(
            (options.older_than_ms or 0) * 1_000_000, "--older-than", allow_zero=True
        ),
        stack_depth=STACK_DEPTH,
        free_offset=scriptgen.positive_int(free_offset, "free offset", allow_zero=True),
    )


@dataclass(frozen=True)
class BpftraceBackend(BaseBackend):
    """bpftrace running leakhunt's generated scripts (see ``leakhunt.probe.backend.Backend``)."""

    name: BackendName = "bpftrace"
    trace_events_unordered: bool = True  # per-CPU perf buffers deliver runs of events late
    trace_monotonic_clock: bool = True  # events are stamped with bpf_ktime_get_ns()

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,
    ) -> ProbeCommand:
        """bpftrace running the investigate script (written at ``script_path`` by ``run_live``)."""
        if pid is None:
            raise UsageError("give a pid or a command")
        lib = tools.probed_object(pid, options.obj, allocator, launched=launched)
        hooks = allocator.hooks if allocator is not None else None
        free_offset, note = free_placement(self.tool, lib)
        if hooks is not None and not any(h.symbol == "free" for h in hooks):
            free_offset, note = 0, ""  # a prefixed allocator: its free (je_free) is probed at its entry
        script = render_script(pid, lib, options, launched=launched, free_offset=free_offset, hooks=hooks)
        unsafe = ("--unsafe",) if free_offset else ()
        argv = (self.tool.path, *unsafe, "-f", "json", "-p", str(pid), script_path)
        return json_command(
            self.tool,
            argv,
            options,
            reason=self.reason,
            script=script,
            script_path=script_path,
            arm=None if launched else arm,
            one_pid=True,
            max_tracked=options.map_keys,
            notes=(note,) if note else (),
            counts_calls=True,
            snapshot_lines=True,
        )

    def trace(
        self, pid: int, *, script_path: str, launched: bool, allocator: AllocatorInfo | None = None
    ) -> ProbeCommand:
        """bpftrace running the trace script: one ``A``/``F`` line per allocator call."""
        argv = (self.tool.path, script_path)
        lib = tools.probed_object(pid, None, allocator, launched=launched)
        hooks = allocator.hooks if allocator is not None else None
        return ProbeCommand(
            info=backend_info(self, argv),
            argv=argv,
            env=(),
            attached=lambda line, stderr, pid: line is not None and line.startswith(TRACE_ATTACHED_PREFIX),
            script=render_trace_script(pid, lib, hooks),
            script_path=script_path,
        )


def json_command(
    tool: tools.Tool,
    argv: tuple[str, ...],
    options: ProbeOptions,
    *,
    reason: str,
    script: str,
    script_path: str,
    arm: Callable[[int], None] | None,
    one_pid: bool,
    max_tracked: int | None = None,
    notes: tuple[str, ...] = (),
    counts_calls: bool = False,
    snapshot_lines: bool = False,
) -> ProbeCommand:
    """A bpftrace program printing maps as JSON (``-f json``): the alloc probes, growth mode and
    kernel mode share its environment, attach signal and parser; ``run_live`` writes ``script``
    at ``script_path``. ``one_pid``: the program's stacks are all of one process (``-p``).
    ``snapshot_lines``: the program is investigate.bt.j2, whose snapshots start with a time event
    and end with the @frees gauge, and whose END prints END_MARKER (for ``run_live``'s stop)."""
    env = dict(tools.bpftrace_map_env(options.map_keys))
    env[ATTACHED_MARKER] = "1"
    if one_pid:
        # Without it bpftrace (ASLR on, no -c) rebuilds the target's symbol tables for every stack
        # it prints: seconds of CPU per snapshot. One pid is probed, so a per-pid cache is always right.
        env["BPFTRACE_CACHE_USER_SYMBOLS"] = "1"
    return ProbeCommand(
        info=BackendInfo(name="bpftrace", tool=tool.path, version=tool.version, argv=argv, reason=reason),
        argv=argv,
        env=tuple(env.items()),
        new_parser=parser,
        attached=attached,
        is_chatter=is_chatter,
        arm=arm,
        script=script,
        script_path=script_path,
        max_tracked=max_tracked,
        notes=notes,
        counts_calls=counts_calls,
        block_start=starts_snapshot if snapshot_lines else None,
        block_end=ends_snapshot if snapshot_lines else None,
        cleanup_follows=is_end if snapshot_lines else None,
    )


def is_chatter(line: str) -> bool:
    """The attach marker and END's marker: signs for ``run_live``, not data."""
    return line.strip() == ATTACHED_MARKER or is_end(line)


def is_end(line: str) -> bool:
    """True for END_MARKER, printed by END before the maps are cleared (JSON or text output)."""
    text = line.strip()
    return text == END_MARKER or (text.startswith("{") and f'"{END_MARKER}\\n"' in text)


def starts_snapshot(line: str) -> bool:
    """The time event that starts each snapshot of investigate.bt.j2 (``-f json``)."""
    return _TIME_EVENT.match(line) is not None


def ends_snapshot(line: str) -> bool:
    """The @frees gauge, the last line of each snapshot of investigate.bt.j2."""
    gauge = parse_gauge(line)
    return gauge is not None and gauge[0] == "frees"


def render_trace_script(pid: int, lib: str, hooks: tuple[AllocatorHook, ...] | None = None) -> str:
    """The bpftrace trace script for ``pid`` probing ``lib`` (scripts/capture_fixtures.sh uses it).

    ``hooks``: the allocator functions to probe (``probe.allocator``); None = those ``lib`` defines.
    """
    pid = scriptgen.positive_int(pid, "pid")
    path = scriptgen.safe_path(lib, "the allocator library")
    return scriptgen.render_probe("trace", pid=pid, lib=path, hooks=hooks_in(lib, hooks))


def arm(pid: int) -> None:
    """Start the script's accounting: a kill(pid, 0) from this process, seen by its tracepoint."""
    os.kill(pid, 0)


def parser(stats: ParseStats) -> LineParser:
    """A parser of leakhunt's bpftrace protocol (every mode's script prints it)."""
    return BpftraceParser(stats)


def attached(line: str | None, stderr: str, pid: int) -> bool:
    """True once bpftrace said every probe is attached (ATTACHED_MARKER, stdout or stderr)."""
    return (line is not None and line.strip() == ATTACHED_MARKER) or ATTACHED_MARKER in stderr
