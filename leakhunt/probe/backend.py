"""What a probe backend hands the live session: the command to run and how to read it.

``leakhunt.probe.native``, ``leakhunt.probe.bpftrace`` and ``leakhunt.probe.memleak`` each build a
``ProbeCommand``;
``leakhunt.probe.session`` runs it, waits for ``attached()``, and feeds its output lines to
``new_parser()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from leakhunt.model import BackendInfo
from leakhunt.parse import LineParser, ParseStats

AttachState = Literal["waiting", "attached"]

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
    new_parser: Callable[[ParseStats], LineParser]
    # Called with every stdout line (None when polling without one), the tool's stderr so far
    # and its pid; True once the probes are in the kernel.
    attached: Callable[[str | None, str, int], bool]
    # Lines that are the backend's own chatter (attach markers), not for the parser.
    is_chatter: Callable[[str], bool] = field(default=lambda line: False)
    # Called with the target pid once attached, before a gated command is released: starts the
    # accounting of scripts that wait for it (bpftrace; see investigate.bt.j2).
    arm: Callable[[int], None] | None = None
    script: str | None = None  # the bpftrace program, for the record
    max_tracked: int | None = None  # map capacity for live allocations (bpftrace)
    notes: tuple[str, ...] = ()  # for the report's data quality (native: probes left at offset 0)
