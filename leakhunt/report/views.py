"""What a report says, independent of HTML or Markdown: the verdict sentence, the command to
reproduce, the stop reason in words, the stack table rows and the data-quality lines.

Both ``report.html`` and ``report.markdown`` build their pages from these, so the two formats never
disagree. Nothing here escapes: the HTML environment autoescapes, the Markdown renderer escapes.
"""

from __future__ import annotations

import functools
import heapq
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from leakhunt.analyze.trace import UnfreedColumns, group_columns, unfreed_columns
from leakhunt.model import (
    ALLOCATOR_FUNCTIONS,
    AllocatorInfo,
    DataQuality,
    Finding,
    Investigation,
    RunInfo,
    Target,
    TraceResult,
    Unfreed,
)
from leakhunt.report.svg import format_value

D = TypeVar("D", Investigation, TraceResult)
R = TypeVar("R")


def per_document(fn: Callable[[D], R]) -> Callable[[D], R]:
    """``fn``'s answer for the document it was last asked about, kept: every format of a run's
    reports (HTML, Markdown) asks for the same rows (500 stacks x 300 snapshots: 0.1 s a time).
    Documents are frozen; the answers must not be changed by their callers (tuples)."""
    last: list[tuple[D, R]] = []

    @functools.wraps(fn)
    def cached(doc: D) -> R:
        if last and last[0][0] is doc:
            return last[0][1]
        out = fn(doc)
        last[:] = [(doc, out)]
        return out

    return cached


VERDICT_WORDS = {
    "leak": "keeps growing (leak)",
    "unknown": "unknown: not judged (map full, or too few snapshots)",
    "plateau": "grew, then stopped (plateau)",
    "transient": "comes and goes (transient)",
    "stable": "stable",
}


def human_bytes(n: float) -> str:
    """``1.50 MiB``."""
    return format_value(n, "bytes")


def human_rate(bps: float) -> str:
    """``12.0 KiB/s``."""
    return format_value(bps, "bytes/s")


def human_duration(seconds: float) -> str:
    """``12 s``, ``3 min 20 s``, ``1 h 02 min``."""
    if math.isnan(seconds):
        return "unknown"
    s = round(seconds)
    if s < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def top_frame(f: Finding) -> str:
    """The most telling frame of a stack, as ``parse_request (server.c:42)`` when its line is known:
    the innermost frame of the program's own code, past the allocator, the C and C++ runtimes and
    the standard library's code (``std::vector<char>::_M_default_append`` from vector.tcc, though
    compiled into the program); else the innermost one past the allocator and inlined system
    headers."""
    frames = [fr for fr in f.stack.frames if not fr.is_unknown and not _is_allocator(fr.symbol, fr.module)]
    fr = next((fr for fr in frames if not fr.is_runtime and not _in_std(fr.symbol)), None)
    if fr is None:
        fr = next((fr for fr in frames if not (fr.inlined and fr.is_runtime)), None)
    if fr is None:
        return f.stack.top
    return f"{fr.symbol} ({fr.location})" if fr.location else fr.symbol


def _in_std(symbol: str) -> bool:
    """Whether a demangled C++ name is a function of the standard library's namespaces
    (``void std::vector<int>::_M_realloc_insert<int>(...)``: the name, not its return type)."""
    depth = 0
    start = 0
    for i, ch in enumerate(symbol):
        if ch in "<(":
            if ch == "(" and depth == 0:
                break
            depth += 1
        elif ch in ">)":
            depth = max(depth - 1, 0)
        elif ch == " " and depth == 0:
            start = i + 1
    return symbol.startswith(_STD_NAMESPACES, start)


_STD_NAMESPACES = ("std::", "__gnu_cxx::", "__cxxabiv1::")


_ALLOC_SYMBOLS = frozenset(ALLOCATOR_FUNCTIONS) | frozenset(
    {
        "__libc_malloc",
        "__libc_calloc",
        "__libc_realloc",
        "__strdup",
        "strdup",
        "strndup",
        "__strndup",
        "operator new",
        "operator new[]",
    }
)


# The kernel's allocator layers (slab, page, percpu, vmalloc), named as in /proc/kallsyms: the
# telling frame of a kernel stack is the first caller outside them (do_eventfd, not kmalloc).
_KERNEL_ALLOC_PREFIXES = (
    "kmalloc",
    "__kmalloc",
    "kmem_cache_alloc",
    "__kmem_cache_alloc",
    "kvmalloc",
    "__kvmalloc",
    "kzalloc",
    "krealloc",
    "kmemdup",
    "kstrdup",
    "__alloc_pages",
    "alloc_pages",
    "__alloc_frozen_pages",
    "alloc_frozen_pages",
    "__folio_alloc",
    "folio_alloc",
    "get_page_from_freelist",
    "pcpu_alloc",
    "__alloc_percpu",
    "alloc_percpu",
    "__vmalloc",
    "vmalloc",
    "___slab_alloc",
    "__slab_alloc",
    "allocate_slab",
    "new_slab",
    "alloc_slab",
)


def _is_allocator(symbol: str, module: str | None) -> bool:
    base = symbol.split("(", maxsplit=1)[0].strip()
    if module == "kernel":
        return base.startswith(_KERNEL_ALLOC_PREFIXES)
    return base in _ALLOC_SYMBOLS or base.startswith("operator new")


def mode_of(inv: Investigation) -> str:
    """What the run measured: ``alloc`` (allocator calls), ``growth`` (page faults) or ``kernel``."""
    return dict(inv.options).get("mode", "alloc")


def mode_note(inv: Investigation) -> str:
    """What the numbers of a growth or kernel run mean, said before anything else ("" for alloc)."""
    mode = mode_of(inv)
    if mode == "growth":
        return (
            "Growth mode: the numbers are pages the process touched for the first time (page faults), "
            "per call stack, not outstanding allocations. A stack that keeps adding pages makes memory "
            "grow; that is not proof that memory is never freed (freed memory is reused without a new "
            "fault, and memory returned to the system faults again when touched). Confirm a stack with "
            "the exact allocation probes (--mode alloc)."
        )
    if mode == "kernel":
        who = (
            "of every task on the host (other processes' kernel work competes in the ranking)"
            if inv.target.pid == 0
            else f"made by pid {inv.target.pid} (freed by anyone)"
        )
        return (
            f"Kernel mode: outstanding kernel allocations ({_kernel_kinds(inv)}) {who}, per kernel "
            "stack. A kernel cache that fills and stays is a plateau, not a leak."
        )
    return ""


def _kernel_kinds(inv: Investigation) -> str:
    if inv.backend.name == "bcc":
        return "slab, pages"  # memleak without -p: kmalloc, kmem_cache, pages; percpu only apart
    if dict(inv.options).get("kernel_pages") == "true":
        return "slab, percpu, pages"
    return "slab, percpu"


def allocator_text(a: AllocatorInfo | None) -> str:
    """The allocator probed, in one line (``jemalloc 5.3.0 (/usr/lib/.../libjemalloc.so.2, linked, ...)``)."""
    return a.describe() if a is not None else "not recorded"


def stop_text(run: RunInfo, target: Target) -> str:
    """How the run ended, in words: ``target exited after 12 s (status 0)``, ``interrupted after 8 s``."""
    took = human_duration(run.duration_s)
    stop_reason = run.stop_reason
    if stop_reason == "target-exited":
        code = ""
        if target.exit_code is not None:
            code = (
                f" (killed by signal {-target.exit_code})"
                if target.exit_code < 0
                else (f" (status {target.exit_code})")
            )
        return f"target exited after {took}{code}"
    if stop_reason == "interrupted":
        return f"interrupted after {took}"
    if stop_reason == "duration":
        return f"ran for the planned duration ({took} in all)"
    if stop_reason == "error":
        return f"stopped by an error after {took}"
    return f"{stop_reason} after {took}"


def reproduce_command(inv: Investigation | TraceResult, command: str) -> str:
    """The leakhunt command line that repeats this run (for the cmdline as recorded, maybe redacted)."""
    opts: list[str] = [command]
    t = inv.target
    if not t.launched and t.pid > 0:
        opts.append(str(t.pid))
    given = dict(inv.options) if isinstance(inv, Investigation) else {}
    # The planned duration when recorded, else the measured one.
    opts += ["--duration", given.get("duration") or str(max(1, math.ceil(inv.run.duration_s - 0.5)))]
    if isinstance(inv, Investigation):
        opts += ["--interval", given.get("interval") or f"{inv.interval_s:g}"]
        for name, value in inv.options:
            if name in ("duration", "interval", "backend"):
                continue
            flag = "--" + name.replace("_", "-")
            opts += [flag] if value in ("true", "True") else [flag, value]
    opts += ["--backend", inv.backend.name]
    text = "leakhunt " + shlex.join(opts)
    if t.launched and t.cmdline:
        text += " -- " + shlex.join(t.cmdline)
    return text


@dataclass(frozen=True)
class Row:
    """One finding as the stack table shows it."""

    rank: int
    verdict: str
    rate: float
    rate_text: str
    bytes: int
    bytes_text: str
    count: int | None
    first_seen: float
    last_seen: float
    confidence: float
    top: str
    frames: tuple[str, ...]
    reason: str
    series: tuple[float, ...]  # outstanding bytes per snapshot where seen

    @property
    def trend_text(self) -> str:
        """The sparkline's tooltip: first, peak and last value."""
        if not self.series:
            return "not seen in any snapshot"
        first, peak, last = self.series[0], max(self.series), self.series[-1]
        return (
            f"{len(self.series)} snapshots: first {human_bytes(first)}, peak {human_bytes(peak)}, "
            f"last {human_bytes(last)}"
        )


@per_document
def rows(inv: Investigation) -> tuple[Row, ...]:
    """Every finding as a table row, in rank order."""
    return tuple(
        Row(
            rank=f.rank,
            verdict=f.verdict,
            rate=f.growth_bytes_per_sec,
            rate_text=human_rate(f.growth_bytes_per_sec),
            bytes=f.outstanding_bytes,
            bytes_text=human_bytes(f.outstanding_bytes),
            count=f.count,
            first_seen=f.first_seen,
            last_seen=f.last_seen,
            confidence=f.confidence,
            top=top_frame(f),
            frames=tuple(fr.display() for fr in f.stack.frames) or ("[no stack]",),
            reason=f.reason,
            series=tuple(float(p.outstanding_bytes) for p in f.series),
        )
        for f in sorted(inv.findings, key=lambda f: f.rank)
    )


def leaks(inv: Investigation) -> list[Finding]:
    return [f for f in sorted(inv.findings, key=lambda f: f.rank) if f.verdict == "leak"]


def verdict_sentence(inv: Investigation) -> str:
    """The report's first line: what was found, in one sentence (led by a full map, when there was one)."""
    unknown = [f for f in inv.findings if f.map_full]
    if unknown:
        return (
            f"Incomplete data: the probe's map of live allocations was full, so {len(unknown)} stack(s) lost "
            f"allocations and their verdict is unknown (rerun with a larger --map-keys). "
            + _verdict_sentence(inv)
        )
    return _verdict_sentence(inv)


def _verdict_sentence(inv: Investigation) -> str:
    found = leaks(inv)
    over = human_duration(inv.run.duration_s)
    if not inv.snapshots:
        return f"No data: the probe took no snapshot ({stop_text(inv.run, inv.target)})."
    blind = inv.blind_reason()
    if blind is not None and not found:
        return f"Inconclusive, not a clean result: {blind}."
    if len(inv.snapshots) == 1 and not found:
        biggest = max(inv.findings, key=lambda f: f.outstanding_bytes, default=None)
        holds = (
            f"; the stack holding the most, in {top_frame(biggest)}, holds "
            f"{human_bytes(biggest.outstanding_bytes)}"
            if biggest is not None
            else ""
        )
        return (
            f"Inconclusive, not a clean result: one snapshot cannot show growth{holds}. Capture several "
            "intervals (memleak prints one block per interval) to tell a leak from a cache."
        )
    mode = mode_of(inv)
    if found and mode == "growth":
        top = found[0]
        more = f" ({len(found)} growing stacks in all)" if len(found) > 1 else ""
        return (
            f"Memory growth found: the stack touching new pages in {top_frame(top)} added "
            f"{human_rate(top.growth_bytes_per_sec)} over {over}, {human_bytes(top.outstanding_bytes)} "
            f"in all{more}. Pages touched, not proven leaked: confirm with --mode alloc."
        )
    if found:
        top = found[0]
        more = f" ({len(found)} leaking stacks in all)" if len(found) > 1 else ""
        count = f" in {top.count:,} allocations" if top.count is not None else ""
        where = "the kernel stack allocating in" if mode == "kernel" else "the stack allocating in"
        return (
            f"Leak found: {where} {top_frame(top)} grew at "
            f"{human_rate(top.growth_bytes_per_sec)} over {over} and holds "
            f"{human_bytes(top.outstanding_bytes)}{count}{more}."
        )
    if inv.quality.missed_allocations:
        return f"Not a clean result: no call stack kept growing, but {inv.quality.missed_allocations}."
    unknown = [f for f in inv.findings if f.too_few_snapshots]
    if unknown:  # (a map-full unknown led the sentence)
        first = unknown[0]
        return (
            f"Inconclusive, not a clean result: {len(unknown)} stack(s) grew but could not be judged; "
            f"the first, in {top_frame(first)}: {first.reason}."
        )
    plateaus = [f for f in inv.findings if f.verdict == "plateau"]
    if plateaus:
        return (
            f"No leak found over {over}: {len(plateaus)} stack(s) grew and then stopped growing (plateau), "
            f"which looks like a cache or pool filling up."
        )
    return f"No leak found over {over}: no call stack's outstanding memory kept growing."


@dataclass(frozen=True)
class SnapshotRow:
    """One snapshot in a line: when, how many stacks, how much memory they held."""

    t: float
    clock: str
    stacks: int
    total_bytes: int
    total_count: int | None
    truncated: str  # "top 10" when the tool printed only its top N stacks, else ""


@per_document
def snapshot_rows(inv: Investigation) -> tuple[SnapshotRow, ...]:
    """Every snapshot with its totals, in time order."""
    out = []
    for s in inv.snapshots:
        counts = [ss.count for ss in s.stacks]
        out.append(
            SnapshotRow(
                t=s.t,
                clock=s.clock or "",
                stacks=len(s.stacks),
                total_bytes=sum(ss.outstanding_bytes for ss in s.stacks),
                total_count=None
                if any(c is None for c in counts)
                else sum(c for c in counts if c is not None),
                truncated=(f"top {s.top_n}" if s.top_n else "yes") if s.truncated else "",
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class UnfreedGroup:
    """Blocks never freed that share a size (or a thread)."""

    key: int  # the size in bytes, or the thread id
    count: int
    total_bytes: int
    oldest_age: float  # seconds before the end of the trace


@per_document
def _unfreed(tr: TraceResult) -> UnfreedColumns:
    """Every process's unfreed blocks, with their sizes, threads and times as arrays."""
    return unfreed_columns([u for p in tr.processes for u in p.unfreed])


@per_document
def unfreed_groups(tr: TraceResult) -> tuple[tuple[UnfreedGroup, ...], tuple[UnfreedGroup, ...]]:
    """Unfreed blocks grouped by size (largest total first) and by thread (same order)."""
    columns = _unfreed(tr)

    def rows(by: Literal["size", "tid"]) -> tuple[UnfreedGroup, ...]:
        # the oldest block's age: end - earliest time is the largest end - time (rounding keeps order)
        return tuple(
            UnfreedGroup(g.key, g.count, g.bytes, tr.end_time - g.oldest)
            for g in group_columns(*columns, by=by)
        )

    return rows("size"), rows("tid")


def largest_unfreed(tr: TraceResult, n: int) -> list[Unfreed]:
    """The ``n`` largest blocks never freed (the oldest first among equal sizes)."""
    every, size, _, t = _unfreed(tr)
    if size is None or t is None or n <= 0 or n >= len(every) // 4:
        return heapq.nsmallest(n, every, key=lambda u: (-u.size, u.time))
    # the n-th largest size, then every block at least that large, ranked as nsmallest would
    bar = np.partition(size, len(size) - n)[len(size) - n]
    (candidates,) = np.nonzero(size >= bar)
    ranked = candidates[np.lexsort((t[candidates], -size[candidates]))][:n]
    return [every[i] for i in ranked.tolist()]


@dataclass(frozen=True)
class QualityLine:
    label: str
    value: str
    problem: bool  # worth a reader's attention
    help: str


def quality_lines(q: DataQuality, *, snapshots: int, truncated_snapshots: int) -> list[QualityLine]:
    """Every DataQuality field as a labelled line (problems flagged), in a stable order."""
    rate = "every allocation" if q.sample_rate <= 1 else f"1 in {q.sample_rate} allocations (sizes scaled)"
    return [
        QualityLine(
            "Lost events",
            f"{q.lost_events:,}",
            q.lost_events > 0,
            "events the kernel dropped before the probe read them",
        ),
        QualityLine(
            "Dropped stacks",
            f"{q.dropped_stacks:,}",
            q.dropped_stacks > 0,
            "stack ids that could not be stored (stack map full)",
        ),
        QualityLine(
            "Map full",
            "yes" if q.map_full else "no",
            q.map_full,
            "a probe map reached its size limit, so updates were lost",
        ),
        QualityLine(
            "Unparsed lines",
            f"{q.unparsed_lines:,}",
            q.unparsed_lines > 0,
            "tool output lines leakhunt did not understand",
        ),
        QualityLine(
            "Truncated stacks",
            f"{q.truncated_stacks:,}",
            q.truncated_stacks > 0,
            "stacks cut at the unwinder's depth limit",
        ),
        QualityLine(
            "[unknown] frames",
            f"{q.unknown_frames:,}",
            q.unknown_frames > 0,
            "frames without a symbol (stripped binary or no frame pointers)",
        ),
        QualityLine("Sampling", rate, q.sample_rate > 1, "allocations traced"),
        QualityLine(
            "Snapshots", f"{snapshots:,}", snapshots < 3, "fewer than 3 snapshots cannot show a trend"
        ),
        QualityLine(
            "Top-N truncated snapshots",
            f"{truncated_snapshots:,}",
            truncated_snapshots > 0,
            "snapshots where the tool printed only its top N stacks",
        ),
        QualityLine(
            "Allocations seen",
            "not counted by this backend" if q.allocations_seen is None else f"{q.allocations_seen:,}",
            q.allocations_seen == 0,
            "allocator calls the probe counted; 0 means the run saw nothing and proves nothing",
        ),
        QualityLine(
            "Frees seen",
            "not counted by this backend" if q.frees_seen is None else f"{q.frees_seen:,}",
            False,
            "free calls the probe counted",
        ),
        QualityLine(
            "Missed allocations",
            q.missed_allocations or "none suspected",
            bool(q.missed_allocations),
            "the process's memory grew far more than the allocations the probes saw",
        ),
    ]
