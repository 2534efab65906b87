"""``leakhunt scan``'s job: sample every wanted process over a window, judge each trend, and
(``--investigate-top``) probe the top suspects one after another.

``run_scan(options)`` returns the ``ScanResult``; ``investigate_suspects(result, ...)`` the
investigations. What a person sees while they run (a progress bar, skipped suspects) goes through
the caller's callbacks: ``on_sweep`` and a ``ScanObserver``. The command (``cli/scan.py``) parses
options and prints.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from leakhunt.analyze.trend import judge_all, judge_kernel, suspects
from leakhunt.app.common import run_info
from leakhunt.app.investigate import Progress, run_investigation
from leakhunt.errors import LeakhuntError, ProbeFailed
from leakhunt.interrupt import sigterm_as_interrupt
from leakhunt.model import Finding, Investigation, ProcessTrend, ScanResult
from leakhunt.probe.backend import Backend, ProbeOptions
from leakhunt.probe.choose import choose_backend, other_backend
from leakhunt.sample import Candidate, KernelSampler, Sweeper, SweepStats, describe
from leakhunt.units import mb_per_hour


@dataclass(frozen=True)
class ScanOptions:
    """What to sample and how to judge it (sizes in bytes; ``min_rate``: bytes an hour)."""

    duration: float
    interval: float
    pids: tuple[int, ...] = ()  # () = every process
    name_re: re.Pattern[str] | None = None
    uid: int | None = None
    min_rss: int = 0
    min_growth: int = 0
    min_rate: int = 0


class ScanObserver(Protocol):
    """Told what happens while suspects are investigated."""

    def note(self, line: str) -> None:
        """One line for the person watching (a suspect skipped, a backend switched)."""

    def investigating(
        self, pid: int, name: str, mode: str, duration: float
    ) -> AbstractContextManager[Callable[[Progress], None]]:
        """Entered for the time one suspect is probed; gives the live run's progress callback."""
        ...


def sweep_count(duration: float, interval: float) -> int:
    """Sweeps of a scan: one at 0, then one every ``interval`` up to ``duration``."""
    return int(duration / interval + 1e-9) + 1


def accept_filter(name_re: re.Pattern[str] | None, uid: int | None) -> Callable[[Candidate], bool] | None:
    """The sweeper's filter for ``--name REGEX`` and ``--user``; None when both are absent."""
    if name_re is None and uid is None:
        return None

    def accept(c: Candidate) -> bool:
        if uid is not None and c.uid != uid:
            return False
        return name_re is None or bool(name_re.search(c.name) or name_re.search(" ".join(c.cmdline)))

    return accept


def collect(
    sweeper: Sweeper,
    *,
    duration: float,
    interval: float,
    on_sweep: Callable[[float, SweepStats], None] | None = None,
) -> tuple[float, str]:
    """Sweep every ``interval`` seconds for ``duration`` seconds (first sweep at 0, last at
    ``duration``). Returns (seconds actually covered, stop reason). Ctrl-C / SIGTERM stop early and
    keep what was sampled."""
    start = time.monotonic()
    sweeps = sweep_count(duration, interval)
    stop = "duration"
    try:
        with sigterm_as_interrupt():
            for k in range(sweeps):
                delay = start + k * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                stats = sweeper.sweep()
                if on_sweep is not None:
                    on_sweep(time.monotonic() - start, stats)
    except KeyboardInterrupt:
        stop = "interrupted"
    return time.monotonic() - start, stop


def run_scan(options: ScanOptions, on_sweep: Callable[[float, SweepStats], None] | None = None) -> ScanResult:
    """Sample, then judge every process (and the kernel's slab memory) over the window.

    ``on_sweep(elapsed, stats)`` is called after each sweep. Ctrl-C / SIGTERM end the sampling
    early; what was sampled is judged."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    kernel_sampler = KernelSampler()
    min_growth = options.min_growth

    def swept(elapsed: float, stats: SweepStats) -> None:
        kernel_sampler.sample(elapsed)
        if on_sweep is not None:
            on_sweep(elapsed, stats)

    accept = accept_filter(options.name_re, options.uid)
    with Sweeper(options.pids or None, accept=accept, exclude={os.getpid()}) as sweeper:
        covered, stop = collect(sweeper, duration=options.duration, interval=options.interval, on_sweep=swept)
        series = [s for s in sweeper.series() if s.samples[-1].rss >= options.min_rss]
        reasons = sweeper.unreadable_reasons()
        return ScanResult(
            run=run_info(started_at, covered, stop),
            interval_s=options.interval,
            processes=judge_all(series, min_growth_bytes=min_growth, min_rate_per_hour=options.min_rate),
            sampled=sweeper.sampled,
            unreadable=sum(n for _, n in reasons),
            unreadable_reasons=reasons,
            planned_duration_s=options.duration,
            kernel_memory=judge_kernel(
                kernel_sampler.samples,
                kernel_sampler.caches,
                min_growth_bytes=min_growth,
                min_rate_per_hour=options.min_rate,
                note=kernel_sampler.slabinfo_error or "",
            ),
        )


def investigate_suspects(
    observer: ScanObserver,
    result: ScanResult,
    n: int,
    duration: float,
    backend: Backend,
    *,
    mode: str = "alloc",
) -> tuple[Investigation, ...]:
    """Probe the ``n`` top suspects one after another: two probes at once would each slow the other's
    target (and the uprobe on free costs ~14 us a call here). A suspect that exited, whose pid now
    belongs to another process, or that cannot be probed is reported and skipped.

    ``mode="growth"``: each suspect is first watched in growth mode (page faults, near free) for
    half of ``duration``, then probed exactly for the other half (see ``_growth_first``)."""
    found = suspects(result)[:n]
    if not found:
        observer.note("no suspect to investigate")
        return ()
    if mode == "growth":
        return _growth_first(observer, found, duration, backend)
    return _investigate_each(observer, found, duration, backend)


def _growth_first(
    observer: ScanObserver, found: Sequence[ProcessTrend], duration: float, backend: Backend
) -> tuple[Investigation, ...]:
    """Growth mode over every suspect first, then exact probing of those where it saw growth.

    Exact probing covers the suspect's whole allocator (probes cannot be limited to the stacks growth
    mode named); what growth mode pointed at and whether the exact probe confirmed it is written into
    the exact investigation's notes."""
    half = max(duration / 2, 1.0)
    grow_backend = choose_backend("auto", mode="growth")
    grown = _investigate_each(observer, found, half, grow_backend, mode="growth")
    out: list[Investigation] = []
    for g in grown:
        out.append(g)
        pointed = [f for f in g.findings if f.verdict == "leak"][:3]
        proc = next(p for p in found if p.key.pid == g.target.pid)
        if not pointed:
            observer.note(
                f"pid {proc.key.pid} ({proc.name}): growth mode saw no stack keep adding pages; "
                "no exact probing"
            )
            continue
        for inv in _investigate_each(observer, [proc], half, backend):
            notes = (*inv.quality.notes, _confirmation(pointed, inv))
            out.append(replace(inv, quality=replace(inv.quality, notes=notes)))
    return tuple(out)


def _confirmation(pointed: Sequence[Finding], exact: Investigation) -> str:
    """What growth mode pointed at, and whether exact probing found a leak through the same code."""
    leaks = [f for f in exact.findings if f.verdict == "leak"]
    named = "; ".join(_own_frames(f) for f in pointed)
    confirmed = [f for f in pointed if any(_shares_code(f, leak) for leak in leaks)]
    verdict = (
        f"exact probing confirmed {len(confirmed)} of them as leaking"
        if confirmed
        else "exact probing found no leaking allocation through the same code (the growth may be "
        "memory freed and touched again, or allocated before the probes)"
    )
    return (
        f"scan --investigate-mode growth: growth mode ran first and pointed at {len(pointed)} stack(s) "
        f"({named}); then the allocator was probed exactly (the whole process, not only those "
        f"stacks): {verdict}"
    )


def _own_frames(f: Finding) -> str:
    names = [fr.symbol for fr in f.stack.frames if not fr.is_unknown][:3]
    return " <- ".join(names) or "[no stack]"


def _shares_code(grew: Finding, leak: Finding) -> bool:
    """Both stacks run through the same function outside the allocator and libc start-up."""
    skip = {"main", "__libc_start_call_main", "__libc_start_main", "_start"}
    a = {fr.symbol for fr in grew.stack.frames if not fr.is_unknown} - skip
    b = {fr.symbol for fr in leak.stack.frames if not fr.is_unknown} - skip
    return bool(a & b)


def _investigate_each(
    observer: ScanObserver,
    found: Sequence[ProcessTrend],
    duration: float,
    backend: Backend,
    *,
    mode: str = "alloc",
) -> tuple[Investigation, ...]:
    options = ProbeOptions(
        duration=duration,
        interval=min(5.0, max(1.0, duration / 6)),
        mode="growth" if mode == "growth" else "alloc",
    )
    out: list[Investigation] = []
    for p in found:
        info = describe(p.key.pid)
        if info is None or abs(info.create_time - p.key.create_time) > 0.05:
            observer.note(f"skipped pid {p.key.pid} ({p.name}): it has exited")
            continue
        with observer.investigating(p.key.pid, p.name, mode, duration) as show:
            try:
                inv = run_investigation(p.key.pid, options=options, progress=show, backend=backend)
            except ProbeFailed as err:
                # The probe itself failed (another eBPF tool holding the same uprobe, typically):
                # unattended escalation deserves one try with the other backend.
                other = other_backend(backend)
                if other is None:
                    observer.note(f"skipped pid {p.key.pid} ({p.name}): {err}")
                    continue
                observer.note(f"pid {p.key.pid}: {backend.name} failed ({err.message}); trying {other.name}")
                try:
                    inv = run_investigation(p.key.pid, options=options, progress=show, backend=other)
                except LeakhuntError as err2:
                    observer.note(f"skipped pid {p.key.pid} ({p.name}): {err2}")
                    continue
            except LeakhuntError as err:
                observer.note(f"skipped pid {p.key.pid} ({p.name}): {err}")
                continue
        leaks = [f for f in inv.findings if f.verdict == "leak"]
        what = "growing stack(s) (growth mode)" if mode == "growth" else "leaking stack(s)"
        head = f"pid {p.key.pid} ({p.name}): {len(leaks)} {what}"
        if leaks:
            head += f", rank 1 {leaks[0].stack.top} at {mb_per_hour(leaks[0].growth_bytes_per_sec)} MB/h"
        observer.note(head)
        out.append(inv)
    return tuple(out)
