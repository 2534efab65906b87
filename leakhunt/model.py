"""Typed data passed between leakhunt's stages: sample -> probe -> parse -> analyze -> report.

Every class here is a frozen dataclass. Stages never hand each other dicts of Any; the JSON
form of these objects is produced and read back by ``leakhunt.report.jsonio`` only.

Conventions:
- times are seconds (float); ``t`` fields are seconds since the start of the run, wall-clock
  instants are ISO-8601 strings with a timezone (``started_at``);
- sizes are bytes (int);
- stacks list frames innermost first (the allocating function's caller chain, as memleak prints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy only for the annotations of TupleBlock: importing model stays cheap
    import numpy as np
    import numpy.typing as npt

SCHEMA_VERSION = 2  # 2: series, snapshots and memory samples as arrays (1 is still read)

# "unknown": the probe could not track all of the stack's allocations (its map was full), so its
# series is incomplete and no verdict is given (ranked right after the leaks).
Verdict = Literal["leak", "unknown", "plateau", "transient", "stable"]
VERDICT_ORDER: tuple[Verdict, ...] = ("leak", "unknown", "plateau", "transient", "stable")
# how an "unknown" finding's reason starts: allocations the probe could not track, or a stack that
# grew but was seen in two snapshots only
UNKNOWN_MAP_FULL = "unknown: map full"
UNKNOWN_TOO_FEW = "unknown: too few snapshots"

ScanVerdict = Literal["leak-suspect", "growing", "sawtooth", "plateau", "stable"]

BackendName = Literal["native", "bpftrace", "bcc"]

# The libc allocator entry points leakhunt probes (the list; memleak probes the same set).
ALLOCATOR_FUNCTIONS: tuple[str, ...] = (
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
)


# What a hooked allocator function does, as the probes need it (where the size and pointers are):
#   alloc0  size in the 1st argument, returns the block (malloc, valloc, operator new and variants)
#   alloc1  size in the 2nd argument (memalign, aligned_alloc)
#   calloc  nmemb * size;  realloc  (old pointer, size);  reallocarray  (old pointer, nmemb, size)
#   posix_memalign  (memptr, alignment, size), returns 0 and stores the block at *memptr
#   free  the block in the 1st argument (free, cfree, operator delete and variants)
AllocatorRole = Literal["alloc0", "alloc1", "calloc", "realloc", "reallocarray", "posix_memalign", "free"]
ALLOCATOR_ROLES: tuple[AllocatorRole, ...] = (
    "alloc0",
    "alloc1",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "free",
)


@dataclass(frozen=True)
class AllocatorHook:
    """One function of the allocator object that the probes hook, and what it does."""

    symbol: str  # the ELF symbol name, mangled for C++ (``_Znwm``)
    role: AllocatorRole


@dataclass(frozen=True)
class AllocatorInfo:
    """The allocator a process really uses, as detected from its mappings and symbol tables.

    ``path`` is the object that defines it, as the target sees it (a container's path is not
    prefixed with /proc/PID/root). ``hooks`` lists one symbol per address (aliases dropped).
    ``name`` is glibc, musl, jemalloc, tcmalloc, mimalloc or unknown.
    """

    name: str
    path: str
    version: str | None = None
    prefix: str = ""  # je_, tc_, mi_ for a prefixed build (redis' bundled jemalloc); "" for plain names
    hooks: tuple[AllocatorHook, ...] = ()
    how: str = ""  # how it was found: "LD_PRELOAD", "linked", "static in the executable", "--obj"

    @property
    def cxx_hooked(self) -> bool:
        """True when the hooks include C++ operator new."""
        return any(h.symbol.startswith("_Zn") for h in self.hooks)

    def describe(self) -> str:
        """One line for terminals and reports: ``jemalloc 5.3.0 (libjemalloc.so.2, linked, ...)``."""
        text = self.name + (f" {self.version}" if self.version else "")
        extra = [self.path]
        if self.how:
            extra.append(self.how)
        if self.prefix:
            extra.append(f"prefix {self.prefix}")
        extra.append(f"{len(self.hooks)} functions hooked" + (", C++ new/delete" if self.cxx_hooked else ""))
        return f"{text} ({', '.join(extra)})"


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a call stack.

    ``symbol`` is the function name as the tool printed it (demangled C++ names keep their spaces),
    ``[unknown]`` when the tool could not name it, or ``0x...`` hex when only an address is known.
    ``offset`` is the byte offset into the function when known. ``module`` is the object's base name
    (``libc.so.6``, ``leak``, ``kernel``) or a full path when that is all the tool gave.
    """

    symbol: str
    offset: int | None = None
    module: str | None = None
    address: int | None = None
    # Source position from the object's DWARF line table (leakhunt.symbols), when it has debug info.
    # ``file`` is the path as compiled (may not exist on this host); ``line`` 0/None = unknown.
    file: str | None = None
    line: int | None = None
    # True for a call the compiler inlined: this frame and the next (outer) one share one address.
    inlined: bool = False

    def display(self) -> str:
        """The frame as ``function+0xoff [module] (file.c:42)`` (the form reports and JSON use)."""
        return _frame_text(self)

    @property
    def location(self) -> str:
        """``file.c:42`` (base name of the source file), or "" when unknown."""
        if not self.file:
            return ""
        name = self.file.rsplit("/", 1)[-1]
        return f"{name}:{self.line}" if self.line else name

    @property
    def is_unknown(self) -> bool:
        return self.symbol == "[unknown]" or _HEX_RE.fullmatch(self.symbol) is not None

    @property
    def is_runtime(self) -> bool:
        """Code of the C or C++ runtime, not the program's own: a frame in libc, libstdc++, libgcc
        or the dynamic loader, or compiled from a system header (std::vector's members instantiated
        in the program, inlined or not: ``vector.tcc``, ``stl_vector.h``)."""
        if self.module and _RUNTIME_MODULE.match(self.module.rsplit("/", 1)[-1]):
            return True
        return bool(self.file and self.file.startswith(_SYSTEM_DIRS))


_HEX_RE = re.compile(r"(0x)?[0-9a-fA-F]{6,}")
_RUNTIME_MODULE = re.compile(
    r"(libc|libstdc\+\+|libc\+\+|libc\+\+abi|libgcc_s|libm|ld-linux[-\w]*|libpthread)[.-]"
)
_SYSTEM_DIRS = ("/usr/include/", "/usr/lib/gcc/", "/usr/local/include/")


@lru_cache(maxsize=1 << 16)
def _frame_text(frame: Frame) -> str:
    """``Frame.display``, kept for the most recent frames: every report format and the JSON's stack
    table spell each frame of hundreds of stacks again (30,000 texts for 500 stacks)."""
    text = frame.symbol
    if frame.offset is not None:
        text += f"+{frame.offset:#x}"
    if frame.module:
        text += f" [{frame.module}]"
    location = frame.location
    if location or frame.inlined:
        text += f" ({', '.join(p for p in (location, 'inlined' if frame.inlined else '') if p)})"
    return text


@dataclass(frozen=True)
class RawStack:
    """What the native probe copies for DWARF unwinding, once per stack key: the registers at the
    allocator's return (``ip`` in the caller) and the top of the user stack from ``sp``."""

    ip: int
    sp: int
    bp: int
    data: bytes


# The one frame of a stack the native probe left to unwind (``Frame.address`` holds its key), until
# leakhunt.symbols replaces it with the unwound frames.
UNWIND_PENDING = "[stack to unwind]"


@dataclass(frozen=True)
class Stack:
    """A call stack, innermost frame first. Identity (hash/eq) is the frame tuple.

    The hash and the text key are computed once (a long run looks each stack up millions of times).
    """

    frames: tuple[Frame, ...]

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash(self.frames)

    @cached_property
    def key(self) -> str:
        """A stable text key: the displayed frames joined by ``;`` innermost first."""
        return ";".join(f.display() for f in self.frames) if self.frames else "[no stack]"

    @property
    def top(self) -> str:
        """The innermost frame's symbol, or ``[no stack]``."""
        return self.frames[0].symbol if self.frames else "[no stack]"


@dataclass(frozen=True, slots=True)
class StackSample:
    """Outstanding allocations of one stack at one snapshot."""

    stack: Stack
    outstanding_bytes: int
    count: int | None = None  # number of outstanding allocations, when the tool tells
    addresses: tuple[tuple[int, int], ...] = ()  # (address, size) pairs from memleak -a, when given


@dataclass(frozen=True)
class Snapshot:
    """Outstanding allocations per stack at one instant."""

    t: float  # seconds since the run started
    stacks: tuple[StackSample, ...]
    clock: str | None = None  # wall-clock text as the tool printed it ("08:46:22"), if any
    # True when the tool printed only its top N stacks, so a stack missing here may still exist
    truncated: bool = False
    top_n: int | None = None
    # (address, size) pairs of BCC memleak -a: printed per snapshot, not tied to a stack
    addresses: tuple[tuple[int, int], ...] = ()
    # (stack, allocations) the probe could not track since it started (its map was full): those
    # allocations are in no count above, so these stacks' series are incomplete
    untracked: tuple[tuple[Stack, int], ...] = ()


@dataclass(frozen=True)
class MemSample:
    """Memory of one process at one instant (from /proc via psutil)."""

    t: float  # seconds since the series started
    rss: int
    vms: int
    shared: int
    swap: int | None = None

    @property
    def anon(self) -> int:
        """Anonymous resident memory plus swap: the main leak signal."""
        return max(self.rss - self.shared, 0) + (self.swap or 0)


@dataclass(frozen=True)
class Target:
    """The process investigated."""

    pid: int
    comm: str
    cmdline: tuple[str, ...]
    exe: str | None = None
    launched: bool = False  # True for `leakhunt run` / trace -- CMD
    exit_code: int | None = None  # for launched commands: exit status, or -signal
    exited_early: bool = False  # the target ended before the investigation's planned end


@dataclass(frozen=True)
class BackendInfo:
    name: BackendName
    tool: str  # path of the program run (bpftrace, memleak-bpfcc, ...)
    version: str
    argv: tuple[str, ...]  # the command line run (script path, not script text)
    reason: str = ""  # why --backend auto chose it


@dataclass(frozen=True)
class DataQuality:
    """What may be missing or wrong in the data. Reports show every non-empty field."""

    lost_events: int = 0
    unparsed_lines: int = 0
    unparsed_examples: tuple[str, ...] = ()  # a few of the unparsed lines, verbatim
    dropped_stacks: int = 0  # stack ids lost (map full, -EEXIST / -ENOMEM)
    map_full: bool = False
    truncated_stacks: int = 0  # stacks that hit the unwinder's depth limit
    unknown_frames: int = 0
    sample_rate: int = 1  # 1 = every allocation
    notes: tuple[str, ...] = ()  # free text: "target exited after 12.0 s", "interrupted by Ctrl-C"
    # Allocator calls the probe counted (None: the backend cannot count them, e.g. memleak).
    allocations_seen: int | None = None
    frees_seen: int | None = None
    # Non-empty when the process's memory grew far more than the allocations the probes saw: one
    # sentence with the figures and the likely cause ("allocator X not hooked"). The result is then
    # not a clean bill of health, whatever the findings say.
    missed_allocations: str = ""


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    t: float
    outstanding_bytes: int
    count: int | None = None


@dataclass(frozen=True)
class SourceSnippet:
    """The source lines around a finding's allocating line, read when the report was made.

    ``lines`` start at line number ``first_line``; when the file could not be shown, ``lines`` is
    empty and ``error`` says why (not on this host, not readable, not a source file)."""

    file: str
    line: int
    first_line: int = 0
    lines: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Finding:
    """One stack's judgement over all snapshots. ``rank`` 1 is the most likely leak."""

    rank: int
    stack: Stack
    verdict: Verdict
    outstanding_bytes: int  # at the last snapshot where it was seen
    count: int | None
    growth_bytes_per_sec: float  # robust slope of outstanding bytes over time
    confidence: float  # 0..1
    first_seen: float
    last_seen: float
    series: tuple[SeriesPoint, ...]
    reason: str = ""  # the numbers behind the verdict, one sentence
    source: SourceSnippet | None = None  # the allocating line in the program's code, when known

    @property
    def map_full(self) -> bool:
        """Unknown because the probe could not track some of its allocations (its map was full)."""
        return self.verdict == "unknown" and self.reason.startswith(UNKNOWN_MAP_FULL)

    @property
    def too_few_snapshots(self) -> bool:
        """Unknown because it grew in two snapshots only (the other kind of unknown; the reason
        may start with the allocator-only prefix, so it is told by not being map full)."""
        return self.verdict == "unknown" and not self.reason.startswith(UNKNOWN_MAP_FULL)


@dataclass(frozen=True)
class RunInfo:
    """The run header of every result kind (Investigation, TraceResult, ScanResult).

    The JSON keeps these fields flat, at the top level of each document (schema v1).
    """

    started_at: str  # ISO-8601, with a timezone
    duration_s: float  # actual length of the run (what a scan covered)
    stop_reason: str = "duration"  # duration | target-exited | interrupted | error
    host: str = ""  # "" = unknown (an import whose log does not say)
    kernel: str = ""
    leakhunt_version: str = ""


@dataclass(frozen=True)
class Investigation:
    """The result of `investigate`, `run` or `import` of periodic stack output."""

    target: Target
    backend: BackendInfo
    run: RunInfo
    interval_s: float
    snapshots: tuple[Snapshot, ...]
    findings: tuple[Finding, ...]
    memory: tuple[MemSample, ...] = ()  # target RSS/VSZ over the run
    quality: DataQuality = field(default_factory=DataQuality)
    options: tuple[tuple[str, str], ...] = ()  # probe options as given (min_size, sample_rate, ...)
    allocator: AllocatorInfo | None = None  # the allocator probed (None: not detected, e.g. import)

    def blind_reason(self) -> str | None:
        """Why this run cannot tell "no leak" (the probes saw nothing), or None when it can.

        A run in which no allocation was seen would otherwise look clean: reports lead with this
        and the command-line tools exit with a status that does not mean "checked, no leak".
        """
        seen = self.quality.allocations_seen
        if not self.snapshots:
            return None  # "no snapshot was taken" is said on its own
        if seen == 0:
            frees = self.quality.frees_seen
            freed = f" ({frees:,} frees)" if frees else ""
            return (
                f"the probes saw no allocation call{freed} in {self.run.duration_s:.1f} s: the target did "
                "not allocate, or allocates through functions that were not hooked (another "
                "allocator such as jemalloc or tcmalloc, a static binary: see --obj)"
            )
        if seen is None and not any(snap.stacks for snap in self.snapshots):
            return (
                f"no outstanding allocation was seen in any of the {len(self.snapshots)} snapshots: "
                "the target freed everything it allocated, or its allocations were not seen "
                "(another allocator such as jemalloc or tcmalloc, a static binary: see --obj)"
            )
        return None


# --- trace mode ---------------------------------------------------------------------------------

TraceKind = Literal["alloc", "free"]


@dataclass(frozen=True)
class TraceEvent:
    """One matched allocator call from a per-call trace (memleak -t or the bpftrace trace script)."""

    t: float  # timestamp as the tool printed it (seconds)
    pid: int  # process id (tgid) when known, else the thread id
    tid: int
    comm: str
    kind: TraceKind
    address: int
    size: int | None  # for frees, the size memleak printed (may be absent)


@dataclass(frozen=True)
class Unfreed:
    address: int
    size: int
    tid: int
    time: float  # allocation timestamp (same clock as TraceEvent.t)


@dataclass(frozen=True)
class TraceProcess:
    pid: int
    comm: str
    alloc_count: int
    free_count: int
    unknown_frees: int  # frees of addresses allocated before the trace started
    unfreed: tuple[Unfreed, ...]

    @property
    def unfreed_count(self) -> int:
        return len(self.unfreed)

    @cached_property
    def unfreed_bytes(self) -> int:  # (cached: read by every report and the summary)
        return sum(u.size for u in self.unfreed)


@dataclass(frozen=True)
class TraceResult:
    target: Target
    backend: BackendInfo
    run: RunInfo
    processes: tuple[TraceProcess, ...]
    end_time: float  # last timestamp seen (same clock as events), for ages
    rate: tuple[tuple[float, int, int], ...] = ()  # (t bucket start, allocs, bytes) over time
    quality: DataQuality = field(default_factory=DataQuality)
    allocator: AllocatorInfo | None = None  # the allocator traced (None: not detected, e.g. import)


# --- scan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessKey:
    """A process identity that survives PID reuse."""

    pid: int
    create_time: float


@dataclass(frozen=True)
class Series:
    """The samples of one process at the end of a scan (what ``sample.Sweeper`` hands to
    ``analyze.trend``)."""

    key: ProcessKey
    name: str
    cmdline: tuple[str, ...]
    username: str | None
    samples: tuple[MemSample, ...]
    alive: bool  # still running at the last sweep


@dataclass(frozen=True)
class TrendEvidence:
    """Numbers behind a scan verdict."""

    slope_bytes_per_sec: float  # Theil-Sen slope of the main signal (anon + swap)
    slope_rss_bytes_per_sec: float
    slope_vms_bytes_per_sec: float
    trend_z: float  # Mann-Kendall z statistic (monotonic trend strength)
    r2: float  # fitted trend quality 0..1
    growth_bytes: int  # last minus first (of the signal judged)
    late_slope_ratio: float  # slope of the last half over the slope of the first half
    drops: int  # significant falls (sawtooth)
    address_space_growth: bool  # VSZ grew much faster than RSS
    note: str = ""


@dataclass(frozen=True)
class ProcessTrend:
    key: ProcessKey
    name: str
    cmdline: tuple[str, ...]
    username: str | None
    verdict: ScanVerdict
    evidence: TrendEvidence
    samples: tuple[MemSample, ...]


@dataclass(frozen=True)
class SlabTrend:
    """One kernel slab cache over a scan (from /proc/slabinfo: active objects x object size)."""

    name: str
    first_bytes: int
    last_bytes: int
    slope_bytes_per_sec: float  # Theil-Sen


@dataclass(frozen=True)
class KernelTrend:
    """The kernel's own memory over a scan: unreclaimable slab (/proc/meminfo SUnreclaim).

    ``samples`` reuse MemSample: ``rss`` = SUnreclaim (the judged signal, as ``anon``), ``vms`` = Slab
    (reclaimable included), ``shared`` = 0. ``caches`` are the slab caches that grew most (only when
    /proc/slabinfo was readable, i.e. as root), largest growth first.
    """

    verdict: ScanVerdict
    evidence: TrendEvidence
    samples: tuple[MemSample, ...]
    caches: tuple[SlabTrend, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ScanResult:
    # stop_reason: duration (sampled the whole window) | interrupted (Ctrl-C/SIGTERM: duration_s is
    # what was covered)
    run: RunInfo
    interval_s: float
    processes: tuple[ProcessTrend, ...]  # ranked, suspects first
    sampled: int  # processes seen
    unreadable: int  # processes that denied access
    unreadable_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count)
    # investigations escalated with --investigate-top, in scan rank order
    investigations: tuple[Investigation, ...] = ()
    planned_duration_s: float | None = None  # --duration as asked; None in files written before it
    kernel_memory: KernelTrend | None = None  # the kernel's slab memory over the scan, from /proc/meminfo


# One traced event as plain values, for the per-call matcher's hot loop (``parse.trace`` makes
# them, ``analyze.trace`` matches them): (kind, t, pid, tid, comm, address, size, pid_known); kind
# is "alloc" or "free"; size is None when not printed; pid_known is False when pid is only
# memleak's thread id (no "leakhunt: tid" note).
TraceFields = tuple[str, float, int, int, str, int, int | None, bool]


@dataclass(frozen=True)
class TupleBlock:
    """What ``parse.trace_block.parse_tuple_block`` found in a block of ``lines`` lines of
    memleak -t text (matched as arrays by ``analyze.trace.TraceMatcher.match_block``).

    ``starts``/``ends``: each line's first byte and the byte after its last one (newline not
    included), as offsets into the block. ``plain``: the line is a plain memleak tuple (see
    ``parse.trace_block``). The plain lines that are events (alloc exited, free entered) are listed
    in line order: ``line`` (line number) and the event arrays. Plain ``alloc entered`` lines are no
    events (``alloc exited`` follows with the address).
    """

    lines: int
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    plain: npt.NDArray[np.bool_]
    line: npt.NDArray[np.int64]
    is_alloc: npt.NDArray[np.bool_]
    tid: npt.NDArray[np.int64]
    t: npt.NDArray[np.float64]
    size: npt.NDArray[np.int64]  # the allocation's size; 0 for frees (memleak's free size is not used)
    address: npt.NDArray[np.uint64]
