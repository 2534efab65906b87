"""A probe backend: an object that knows its tool's command lines, its parsers and its quirks.

``leakhunt.probe.live.run_live`` runs whatever ``ProbeCommand`` a backend builds; the jobs in
``leakhunt.app`` never branch on the backend's name. A backend module (``probe/bpftrace.py``,
``probe/memleak.py``, ``probe/native.py``) defines one class satisfying ``Backend``, listed in
``leakhunt.probe.choose``, whose ``choose_backend()`` picks one for ``--backend``.

Adding a backend = one new module with a class like ``BpftraceBackend`` and its entry in
``leakhunt.probe.choose`` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal, Protocol, Self

from leakhunt.errors import UsageError
from leakhunt.model import AllocatorInfo, BackendInfo, BackendName
from leakhunt.parse import LineParser, ParseStats
from leakhunt.probe import tools

# What a live investigation measures:
# - alloc: the target's allocator calls (malloc/free...), outstanding bytes per user stack (exact);
# - growth: the target's first touches of new pages (page faults), pages added per user stack
#   (near free, but memory touched is not memory leaked: see leakhunt.probe.growth);
# - kernel: the kernel's own allocations (slab, percpu, pages), outstanding bytes per kernel stack.
ProbeMode = Literal["alloc", "growth", "kernel"]
PROBE_MODES: tuple[ProbeMode, ...] = ("alloc", "growth", "kernel")


@dataclass(frozen=True)
class ProbeOptions:
    """Probe settings shared by ``investigate``, ``run`` and ``scan --investigate-top``.

    Sizes in bytes, times in seconds except ``older_than_ms``. ``None`` = the tool's default.
    """

    duration: float = 60.0
    interval: float = 5.0
    backend: Literal["auto", "native", "bpftrace", "bcc"] = "auto"
    min_size: int | None = None
    max_size: int | None = None
    sample_rate: int = 1  # record ~1 in N allocations
    older_than_ms: int | None = None  # only allocations older than this count (memleak -o)
    top: int = 10  # stacks shown in the terminal summary (and memleak -T)
    obj: str | None = None  # allocator library or static binary to probe instead of the target's libc
    map_keys: int = 131072  # bpftrace map size: live allocations tracked at once
    min_growth_bytes: int = 4096  # growth below this is never a leak
    sample_bytes: int | None = None  # native backend: Poisson sampling, one sample per this many bytes
    mode: ProbeMode = "alloc"
    kernel_pages: bool = False  # kernel mode: trace page allocations too (page faults, page cache)
    # native backend: "dwarf" = stack copies unwound with CFI by leakhunt, "fp" = frame-pointer walk
    unwind: Literal["dwarf", "fp"] = "dwarf"

    def as_pairs(self) -> tuple[tuple[str, str], ...]:
        """The options as (name, value) text pairs for ``Investigation.options``."""
        pairs = [
            ("duration", f"{self.duration:g}"),
            ("interval", f"{self.interval:g}"),
            ("backend", self.backend),
            ("sample_rate", str(self.sample_rate)),
            ("top", str(self.top)),
        ]
        if self.mode != "alloc":
            pairs.insert(0, ("mode", self.mode))
        if self.kernel_pages:
            pairs.append(("kernel_pages", "true"))
        for name, value in (
            ("min_size", self.min_size),
            ("max_size", self.max_size),
            ("older_than_ms", self.older_than_ms),
            ("obj", self.obj),
            ("sample_bytes", self.sample_bytes),
            ("unwind", "fp" if self.unwind == "fp" and self.backend == "native" else None),
        ):
            if value is not None:
                pairs.append((name, str(value)))
        return tuple(pairs)


@dataclass(frozen=True)
class ProbeCommand:
    """A probe ready to start: argv, environment, and how to tell when it is attached."""

    info: BackendInfo
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    # Called with every stdout line (None when polling without one), the tool's stderr so far
    # and its pid; True once the probes are in the kernel.
    attached: Callable[[str | None, str, int], bool]
    # The snapshot parser of an investigation (None for a trace command: app.trace parses events).
    new_parser: Callable[[ParseStats], LineParser] | None = None
    # Lines that are the backend's own chatter (attach markers), not for the parser.
    is_chatter: Callable[[str], bool] = field(default=lambda line: False)
    # Called with the target pid once attached, before a gated command is released: starts the
    # accounting of scripts that wait for it (bpftrace; see investigate.bt.j2).
    arm: Callable[[int], None] | None = None
    script: str | None = None  # the bpftrace program: run_live writes it to ``script_path``
    script_path: str | None = None
    max_tracked: int | None = None  # map capacity for live allocations (bpftrace)
    # for the report's data quality: probes left at offset 0 (native), what memleak cannot hook
    notes: tuple[str, ...] = ()
    # the program prints gauges of the allocator calls it saw (bpftrace's @allocs/@frees); else
    # the parser counts them (native) or nobody does (memleak)
    counts_calls: bool = False
    # Stopping without waiting for the tool's exit (its probes take the kernel seconds to detach):
    # ``data_done`` is the line a tool prints once it printed all its data after SIGINT (the native
    # host, after its last snapshot); a tool that prints no data on SIGINT tells the first and the
    # last line of each snapshot (``block_start``/``block_end``: bpftrace's script), so that a
    # snapshot half printed at the stop is awaited. ``cleanup_follows``: a line after which the
    # tool only cleans up (bpftrace's END: it clears its maps key by key, seconds after a long
    # run), so it is killed then. See ``probe.live``.
    data_done: Callable[[str], bool] | None = None
    # a line the tool prints, among its snapshots, when the target has exited (the native host):
    # the snapshots after it show the target's clean-up at exit, however late leakhunt reads them
    target_exited: Callable[[str], bool] | None = None
    block_start: Callable[[str], bool] | None = None
    block_end: Callable[[str], bool] | None = None
    cleanup_follows: Callable[[str], bool] | None = None
    # given the tool's stderr once it has exited: True when it was stopped in the middle of
    # printing a snapshot (BCC's memleak), so the last block is incomplete and left out
    cut_last_block: Callable[[str], bool] | None = None


class Backend(Protocol):
    """What ``run_live`` and the jobs in ``leakhunt.app`` need from a probe tool.

    Quirk attributes describe the tool's output so that no caller tests the backend's name.
    """

    @property
    def name(self) -> BackendName: ...
    @property
    def tool(self) -> tools.Tool: ...
    @property
    def reason(self) -> str:
        """Why it was chosen (shown to the user and kept in the report)."""
        ...

    @property
    def warning(self) -> str | None:
        """A cost to show the user before attaching (accepted by choosing it explicitly)."""
        ...

    @property
    def attach_timeout(self) -> float:
        """Seconds to wait for the probes to be in the kernel."""
        ...

    @property
    def byte_sampling(self) -> bool:
        """It can sample allocations by bytes (``--sample-bytes``)."""
        ...

    # trace quirks
    @property
    def trace_events_unordered(self) -> bool:
        """Events arrive in per-CPU runs, late: the matcher sorts a window."""
        ...

    @property
    def trace_monotonic_clock(self) -> bool:
        """Event times are CLOCK_MONOTONIC (so "now" ends the trace)."""
        ...

    @property
    def trace_shared_pipe(self) -> bool:
        """Other processes' events interleave; threads are named by tid only."""
        ...

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,
    ) -> ProbeCommand:
        """The command that snapshots outstanding allocations per stack every interval.

        ``options.mode`` says which allocations; ``pid`` is None only in kernel mode (every task).
        ``allocator`` is the allocator to hook with its functions (``probe.allocator``); None: the
        C library the target maps (or ``--obj``).
        """
        ...

    def trace(
        self, pid: int, *, script_path: str, launched: bool, allocator: AllocatorInfo | None = None
    ) -> ProbeCommand:
        """The command that prints one line per allocator call of ``pid`` (``leakhunt trace``)."""
        ...

    def with_reason(self, reason: str) -> Backend:
        """The same backend with another reason for the choice."""
        ...


@dataclass(frozen=True)
class BaseBackend:
    """What every backend class shares: its fields with their usual values, ``with_reason`` and a
    ``trace`` that refuses. A backend subclasses it, sets ``name``, ``attach_timeout`` and the
    quirks that differ, and defines ``investigate`` (and ``trace`` when it has a per-call mode)."""

    tool: tools.Tool
    reason: str
    warning: str | None = None  # a cost to show before attaching (a host-wide bpftrace < 0.20)
    name: BackendName = "bpftrace"
    attach_timeout: float = 60.0
    byte_sampling: bool = False  # --sample-bytes (the native backend's)
    trace_events_unordered: bool = False
    trace_monotonic_clock: bool = False
    trace_shared_pipe: bool = False
    trace_refusal: ClassVar[str] = "this probe has no per-call trace"

    def with_reason(self, reason: str) -> Self:
        return replace(self, reason=reason)

    def trace(
        self, pid: int, *, script_path: str, launched: bool, allocator: AllocatorInfo | None = None
    ) -> ProbeCommand:
        raise UsageError(self.trace_refusal, hint="use leakhunt trace with --backend bcc or bpftrace")


def backend_info(backend: Backend, argv: tuple[str, ...]) -> BackendInfo:
    """``BackendInfo`` of ``backend`` running ``argv`` (shared by the backend classes)."""
    return BackendInfo(
        name=backend.name,
        tool=backend.tool.path,
        version=backend.tool.version,
        argv=argv,
        reason=backend.reason,
    )


# --- what a tool's stderr means -------------------------------------------------------------------


def pipe_busy(stderr: str) -> bool:
    """BCC's -t reads the kernel's trace_pipe, which takes one reader at a time."""
    return "resource busy" in stderr.lower() and "trace_pipe" in stderr


def attach_conflict(stderr: str) -> bool:
    """The tool failed because of another tracer (it may work later, or the other backend now)."""
    text = stderr.lower()
    return (
        "cannot attach uprobe" in text
        or "error attaching probe" in text
        or "invalid argument" in text
        or pipe_busy(stderr)
    )


def hint_for(stderr: str) -> str:
    """What the user can do about a tool that failed with ``stderr`` (one hint for every backend)."""
    text = stderr.lower()
    if "traceback (most recent call last)" in text:
        return (
            "BCC's memleak crashed (its error is below). With --obj, give a library the target maps "
            "(its name, or its path as the target sees it); or use --backend bpftrace or native, "
            "and `leakhunt doctor` to check BCC"
        )
    if "kernel headers" in text or "failed to compile bpf module" in text:
        return tools.SETUP_HINT + "; `leakhunt doctor` checks the headers"
    if "tracefs" in text or "debugfs" in text:
        return "mount tracefs: mount -t tracefs nodev /sys/kernel/tracing"
    if pipe_busy(stderr):
        return (
            "another program reads the kernel's trace_pipe (a second `memleak -t`, `cat trace_pipe`); "
            "it takes one reader at a time: stop it, or use --backend bpftrace"
        )
    if attach_conflict(stderr):
        return (
            "another eBPF tool may hold a uprobe on the same allocator function (the kernel refuses "
            "a second one with different settings, see dmesg 'ref_ctr_offset mismatch': BCC and "
            "bpftrace on one function): stop it, retry when it ended, or try the other --backend"
        )
    if "operation not permitted" in text or "permission" in text:
        return "run as root; in a container, it needs CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON)"
    return "run `leakhunt doctor` to check this host"
