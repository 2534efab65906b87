"""Judging call stacks over snapshots of outstanding allocations: which one leaks?

memleak and bpftrace order stacks by outstanding bytes (memleak prints its top N sorted by size,
the largest last; bpftrace prints a map sorted by value). A cache that filled once and stopped
growing dwarfs a small real leak in that order. Here every stack is judged by the
*shape* of its series instead, and leaks rank first:

- ``leak``: still growing at the end of the run (robust Theil-Sen slope > 0 over the whole run and
  over its second half, a monotone trend by Mann-Kendall, growth >= ``min_growth_bytes``; from
  ``ROBUST_LAST_MIN`` snapshots on, still a growing trend without the newest snapshot);
- ``plateau``: grew by >= ``min_growth_bytes``, then stopped (a cache, a bounded LRU after filling);
- ``transient``: comes and goes (vanishes or falls back after having been there: churn);
- ``stable``: no significant change (including anything allocated before the probes attached).

Example: a 4 MiB cache (0 -> 4 MiB in the first interval, flat afterwards) is a plateau with a
slope of 0 B/s; a 10 KiB/s leak is rank 1 although it holds 1/50th of the bytes.
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from leakhunt.model import (
    ALLOCATOR_FUNCTIONS,
    UNKNOWN_MAP_FULL,
    UNKNOWN_TOO_FEW,
    VERDICT_ORDER,
    Finding,
    Frame,
    SeriesPoint,
    Snapshot,
    Stack,
    StackSample,
    Verdict,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A leak must keep at least this share of its whole-run slope in the second half of the run;
# below it the stack "grew then stopped" (plateau).
LATE_SLOPE_RATIO = 0.25
# Mann-Kendall z below this is not a trend (z=1.0 ~ 84% one-sided). Low on purpose: confidence
# carries the doubt, and three snapshots of a perfectly steady leak give z=1.04.
MIN_TREND_Z = 1.0
# Theil-Sen and Mann-Kendall are quadratic in the points: longer series are judged on this many
# evenly spaced points (about 0.5 ms a stack).
STAT_POINTS = 200
# Snapshots a run keeps (evenly spaced over the whole run once there are more).
WINDOW_SNAPSHOTS = 512
# From this many snapshots on, a leak must also be one without its newest snapshot: one inflated
# snapshot is not a trend. BCC's memleak prints such snapshots under churn (its walk of the blocks
# map starts over when the block it stands on is freed, so blocks are counted twice), and with the
# last third of a short run only two snapshots long, that one snapshot made a full cache a "leak".
ROBUST_LAST_MIN = 6
NEWEST_ALONE = "only its newest snapshot rose in the last third, and one snapshot is not a trend"


@dataclass(frozen=True)
class SeriesStats:
    """Numbers behind a verdict (exposed for tests and for reports that want to explain)."""

    slope: float  # Theil-Sen slope, bytes/s, whole series
    late_slope: float  # Theil-Sen slope of the second half (by time)
    growth: int  # last - first
    rise: int  # max - first
    late_growth: int  # last - value at the start of the second half
    tail_growth: int  # last - value at the start of the last third (at least the last step)
    tail_span: float  # seconds covered by that last third
    trend_z: float  # Mann-Kendall z (positive = increasing)
    tau: float  # Kendall's tau-like monotonicity in [-1, 1]
    vanished: int  # times it fell to 0 after having been > 0
    drops: int  # falls by more than a quarter of the series' peak


def theil_sen(ts: Sequence[float] | FloatArray, ys: Sequence[float] | FloatArray) -> float:
    """Median of pairwise slopes: robust to outliers (up to ~29% of them). 0.0 for < 2 points.

    Pairs (i < j) with ``ts[j] <= ts[i]`` are left out. Vectorised: n(n-1)/2 slopes in numpy, so callers
    keep n bounded (``STAT_POINTS``; series_stats thins longer series evenly).
    """
    y = np.asarray(ys, dtype=np.float64)
    if y.size < 2:
        return 0.0
    dt, ok = _time_pairs(np.asarray(ts, dtype=np.float64))
    i, j = _pairs(y.size)
    return _median_slope(y[j] - y[i], dt, ok)


def _median_slope(dy: FloatArray, dt: FloatArray, ok: BoolArray | None) -> float:
    if ok is not None:
        dy = dy[ok]
        if dy.size == 0:
            return 0.0
    return float(np.median(dy / dt))


def _mk(diff: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Mann-Kendall (z, tau) from the pairwise differences ``diff`` (pairs i < j) of ``y``."""
    n = y.size
    s = int(np.count_nonzero(diff > 0)) - int(np.count_nonzero(diff < 0))
    # Ties shrink the variance; a series of equal values has none (no trend at all).
    counts = np.unique(y, return_counts=True)[1].astype(np.int64)
    ties = int((counts * (counts - 1) * (2 * counts + 5)).sum())
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18
    tau = s / (n * (n - 1) / 2)
    if var <= 0:
        return 0.0, tau
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return z, tau


def mann_kendall(ys: Sequence[float] | FloatArray) -> tuple[float, float]:
    """(z, tau) of the Mann-Kendall trend test; (0, 0) for fewer than 3 points."""
    y = np.asarray(ys, dtype=np.float64)
    if y.size < 3:
        return 0.0, 0.0
    i, j = _pairs(y.size)
    return _mk(y[j] - y[i], y)


def thin_indices(n: int, limit: int = STAT_POINTS) -> IntArray:
    """At most ``limit`` evenly spaced indices of ``range(n)``, always the first and the last."""
    if n <= limit:
        return np.arange(n)
    step = (n - 1) / (limit - 1)
    idx = np.rint(np.arange(limit) * step).astype(np.int64)
    # non-decreasing: drop repeats in one pass (np.unique hashes: 2 ms a call with numpy 2.4 here)
    keep = np.empty(idx.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(idx[1:], idx[:-1], out=keep[1:])
    kept: IntArray = idx[keep]
    return kept


def series_stats(points: Sequence[SeriesPoint]) -> SeriesStats:
    """Trend figures of one stack's series (points sorted by time)."""
    return _stats(*_point_columns(points))


def _point_columns(points: Sequence[SeriesPoint]) -> tuple[FloatArray, IntArray]:
    """(times, outstanding bytes) of ``points``."""
    ts = np.fromiter((p.t for p in points), dtype=np.float64, count=len(points))
    ys = np.fromiter((p.outstanding_bytes for p in points), dtype=np.int64, count=len(points))
    return ts, ys


def _stats(ts: FloatArray, ys: IntArray) -> SeriesStats:
    """series_stats over columns: times (sorted) and outstanding bytes.

    Growth, drops and the tail are read from every point; the Theil-Sen slopes and Mann-Kendall are
    computed on at most ``STAT_POINTS`` evenly spaced points of a longer series (their cost is
    quadratic, and a slope over 200 points of an hour-long run is as well measured as over 3,600).
    """
    n = int(ys.size)
    if n == 0:
        return SeriesStats(0.0, 0.0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0)
    first, last = int(ys[0]), int(ys[-1])
    peak = int(ys.max())
    t_first, t_last = float(ts[0]), float(ts[-1])
    tail_from = t_last - (t_last - t_first) / 3
    tail_start = int(np.argmax(ts >= tail_from))
    if n - tail_start < 2:
        tail_start = max(n - 2, 0)
    tail_growth = last - int(ys[tail_start])
    tail_span = t_last - float(ts[tail_start])
    if peak == int(ys.min()):
        # constant (many stacks of a long run: allocated once, then held): no slope, no trend and
        # no drop; the pairwise work below would find only zeros
        return SeriesStats(0.0, 0.0, 0, 0, 0, 0, tail_span, 0.0, 0.0, 0, 0)
    yf = ys.astype(np.float64)
    mid_t = (t_first + t_last) / 2
    late = np.flatnonzero(ts >= mid_t)
    if late.size < 2:
        # the last two points at least, as for the tail: of three snapshots 2 s apart, the middle
        # one taken at 4.001 s against a midpoint at 4.0015 s left one point, no slope, and a
        # steady leak read "grew then stopped: 0 B/s in the second half"
        late = np.arange(max(n - 2, 0), n)
    if late.size >= 2:
        late_pick = late[thin_indices(late.size)]
        late_slope = theil_sen(ts[late_pick], yf[late_pick])
    else:
        late_slope = 0.0
    late_growth = last - int(ys[late[0]]) if late.size else 0
    pick = thin_indices(n)
    y_pick = yf[pick]
    slope, z, tau = 0.0, 0.0, 0.0
    if n >= 2:
        # one set of pairwise differences for the slope and the trend test
        i, j = _pairs(y_pick.size)
        diff = y_pick[j] - y_pick[i]
        dt, ok = _time_pairs(ts[pick])
        slope = _median_slope(diff, dt, ok)
        if n >= 3:
            z, tau = _mk(diff, y_pick)
    prev, cur = ys[:-1], ys[1:]
    vanished = int(np.count_nonzero((prev > 0) & (cur == 0)))
    drops = int(np.count_nonzero((prev - cur) > peak / 4)) if peak > 0 else 0
    return SeriesStats(
        slope=slope,
        late_slope=late_slope,
        growth=last - first,
        rise=peak - first,
        late_growth=late_growth,
        tail_growth=tail_growth,
        tail_span=tail_span,
        trend_z=z,
        tau=tau,
        vanished=vanished,
        drops=drops,
    )


_DT_CACHE: dict[bytes, tuple[FloatArray, BoolArray | None]] = {}


def _time_pairs(t: FloatArray) -> tuple[FloatArray, BoolArray | None]:
    """Pairwise time steps (pairs i < j) of ``t`` with only the positive ones kept, and the mask that
    selected them (None when all are). Cached: the stacks of one run share their snapshot times."""
    key = t.tobytes()
    hit = _DT_CACHE.get(key)
    if hit is not None:
        return hit
    i, j = _pairs(t.size)
    dt = t[j] - t[i]
    ok: BoolArray | None = dt > 0
    assert ok is not None
    if bool(ok.all()):
        ok = None
    else:
        dt = dt[ok]
    dt.setflags(write=False)
    if len(_DT_CACHE) >= 8:
        _DT_CACHE.pop(next(iter(_DT_CACHE)))
    _DT_CACHE[key] = (dt, ok)
    return dt, ok


@functools.lru_cache(maxsize=16)
def _pairs(n: int) -> tuple[IntArray, IntArray]:
    """Index arrays (i, j) of every pair i < j of n points (cached: series lengths repeat)."""
    i, j = np.triu_indices(n, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def classify(points: Sequence[SeriesPoint], min_growth_bytes: int = 4096) -> tuple[Verdict, float, str]:
    """(verdict, confidence 0..1, reason) for one stack's series."""
    return _judge_columns(*_point_columns(points), min_growth_bytes)[1:]


def _judge(
    st: SeriesStats,
    *,
    n: int,
    span: float,
    last: int,
    peak: int,
    min_growth_bytes: int,
    leak_ok: bool = True,
) -> tuple[Verdict, float, str]:
    if n < 2:
        return "stable", 0.0, "seen in one snapshot only: growth unknown"
    late_ratio = st.late_slope / st.slope if st.slope > 0 else 0.0
    if (
        leak_ok
        and st.slope > 0
        and st.growth >= min_growth_bytes
        and st.late_growth > 0
        and late_ratio >= LATE_SLOPE_RATIO
        and st.trend_z >= MIN_TREND_Z
        # still growing over the last third: a cache that filled early in the second half is not
        and st.tail_growth > 0
        and st.tail_growth >= LATE_SLOPE_RATIO * st.slope * st.tail_span
    ):
        significance = 2 * _phi(st.trend_z) - 1
        steadiness = min(1.0, late_ratio / 0.75)
        confidence = _clip(significance * steadiness)
        reason = (
            f"grew {_size(st.growth)} in {span:.0f} s at {_size(st.slope)}/s, "
            f"still {_size(st.late_slope)}/s in the second half (trend z={st.trend_z:.1f}, {n} snapshots)"
        )
        return "leak", confidence, reason
    if st.vanished or (st.drops and last < 0.5 * peak):
        confidence = _clip(0.5 + 0.25 * (st.vanished + st.drops))
        reason = f"comes and goes: fell to zero {st.vanished}x, dropped by >1/4 of its peak {st.drops}x"
        return "transient", confidence, reason
    if n == 2 and st.growth >= min_growth_bytes:
        # one step up: nothing says whether it stopped (a cache) or goes on (a leak)
        reason = (
            f"{UNKNOWN_TOO_FEW}: grew {_size(st.growth)} between its only two snapshots, "
            f"{span:.0f} s apart (a shorter --interval or a longer run tells a leak from a cache)"
        )
        return "unknown", 0.0, reason
    if st.rise >= min_growth_bytes:
        confidence = _clip(1.0 - max(late_ratio, 0.0)) * _clip((n - 1) / 4)
        reason = (
            f"grew {_size(st.rise)} then stopped: {_size(st.late_slope)}/s in the second half "
            f"against {_size(st.slope)}/s overall"
        )
        if st.slope > 0 and st.trend_z < MIN_TREND_Z:
            reason = f"rose {_size(st.rise)} without a steady trend (trend z={st.trend_z:.1f})"
        return "plateau", confidence, reason
    confidence = _clip((n - 1) / 4)
    reason = f"changed by {_size(st.growth)} over {span:.0f} s (below {_size(min_growth_bytes)})"
    return "stable", confidence, reason


_UNKNOWN = -(1 << 63)  # a stack's bytes at a truncated snapshot that did not list it: unknown, not 0
_NO_COUNT = -1  # the tool gave no allocation count


class SnapshotWindow:
    """The snapshots of a run, bounded: at most ``capacity`` kept, evenly spaced over the whole run.

    When full, every second kept snapshot is dropped and the stride doubles (as ``scan`` keeps its
    memory series), so an hour of 1 s snapshots is held as 256..512 snapshots spread over the hour;
    the newest snapshot is always kept apart. Each stack's outstanding bytes and count are kept as
    columns aligned with the kept snapshots (8 bytes a value, no object per point), updated as each
    snapshot arrives, so ranking while the probe runs reads columns instead of rebuilding series.

    Snapshots are added in time order. A stack missing from a complete snapshot had nothing
    outstanding (0); missing from a snapshot truncated to its top N, it is unknown there.
    """

    def __init__(self, capacity: int = WINDOW_SNAPSHOTS) -> None:
        self.capacity = max(capacity, 4)
        self.stride = 1
        self.taken = 0  # snapshots added, kept or not
        self._since_kept = 0
        self._kept: list[Snapshot] = []
        self._latest: Snapshot | None = None
        self._times = array("d")
        self._bytes: dict[Stack, array[int]] = {}  # per stack, aligned with _times
        self._counts: dict[Stack, array[int]] = {}
        # the same as the findings' series points (None: unknown there), built as snapshots arrive so
        # that the ranking at the end of a long run does not build 500 x 512 of them at once
        self._points: dict[Stack, list[SeriesPoint | None]] = {}
        # the newest snapshot's values when it is not among the kept ones
        self._latest_totals: dict[Stack, tuple[int, int]] = {}
        # stacks with allocations the probe could not track (map full), and how many
        self.untracked: dict[Stack, int] = {}
        # the time of the first snapshot taken after the target exited (its clean-up at exit, an
        # interpreter's or C++ destructors', frees what it held while it ran)
        self.exit_t: float | None = None
        self._exited = False

    def __len__(self) -> int:
        return len(self.snapshots_view())

    def mark_exited(self) -> None:
        """The target has exited: the snapshots added from now on show what it freed on its way
        out. A stack that grew like a leak while the program ran and was freed by that clean-up
        is judged on the snapshots before the exit (``_finding``)."""
        self._exited = True

    def add(self, snap: Snapshot) -> None:
        """Record the next snapshot (not older than the previous one)."""
        self.taken += 1
        if self._exited and self.exit_t is None:
            self.exit_t = snap.t
        self._latest = snap
        totals = _totals(snap)
        for stack, n in snap.untracked:
            # counted since the probe started: the largest count seen is the total
            self.untracked[stack] = max(self.untracked.get(stack, 0), n)
            totals.setdefault(stack, (0, 0))
        self._latest_totals = totals
        self._since_kept += 1
        if self._kept and self._since_kept < self.stride:
            return
        self._since_kept = 0
        if len(self._kept) >= self.capacity:
            del self._kept[1::2]
            del self._times[1::2]
            for column in self._bytes.values():
                del column[1::2]
            for column in self._counts.values():
                del column[1::2]
            for points in self._points.values():
                del points[1::2]
            self.stride *= 2
        self._append(snap, totals)

    def _append(self, snap: Snapshot, totals: dict[Stack, tuple[int, int]]) -> None:
        k = len(self._times)
        missing = _UNKNOWN if snap.truncated else 0
        for stack in totals:
            if stack in self._bytes:
                continue
            # new stack: nothing outstanding at the complete snapshots before, unknown at truncated ones
            self._bytes[stack] = array("q", (0 if not s.truncated else _UNKNOWN for s in self._kept))
            self._counts[stack] = array("q", (0 if not s.truncated else _NO_COUNT for s in self._kept))
            self._points[stack] = [None if s.truncated else SeriesPoint(s.t, 0, 0) for s in self._kept]
        self._kept.append(snap)
        self._times.append(snap.t)
        absent = None if snap.truncated else SeriesPoint(snap.t, 0, 0)
        for stack, column in self._bytes.items():
            value = totals.get(stack)
            if value is None:
                column.append(missing)
                self._counts[stack].append(0 if not snap.truncated else _NO_COUNT)
                self._points[stack].append(absent)
            else:
                column.append(value[0])
                self._counts[stack].append(value[1])
                self._points[stack].append(_point(snap.t, value))
        assert all(len(c) == k + 1 for c in self._bytes.values())

    def snapshots_view(self) -> list[Snapshot]:
        """The kept snapshots, oldest first, ending with the newest one added."""
        out = list(self._kept)
        if self._latest is not None and (not out or out[-1] is not self._latest):
            out.append(self._latest)
        return out

    def snapshots(self) -> tuple[Snapshot, ...]:
        return tuple(self.snapshots_view())

    @property
    def stacks(self) -> int:
        return len(self._bytes)

    def columns(self, stack: Stack) -> tuple[FloatArray, IntArray, IntArray]:
        """(times, bytes, counts) of one stack at the snapshots where it is known (counts -1: none)."""
        # copies: the columns shrink in place when the window is full (no buffer may be exported then)
        times = np.array(self._times, dtype=np.float64)
        b = np.array(self._bytes[stack], dtype=np.int64)
        c = np.array(self._counts[stack], dtype=np.int64)
        latest = self._latest
        if latest is not None and (not self._kept or self._kept[-1] is not latest):
            value = self._latest_totals.get(stack)
            if value is None:
                value = (_UNKNOWN, _NO_COUNT) if latest.truncated else (0, 0)
            times = np.append(times, latest.t)
            b = np.append(b, value[0])
            c = np.append(c, value[1])
        known = b != _UNKNOWN
        if not bool(known.all()):
            times, b, c = times[known], b[known], c[known]
        return times, b, c

    def series(self, stack: Stack) -> tuple[SeriesPoint, ...]:
        """The points of ``columns(stack)`` (what a finding's series holds)."""
        out = [p for p in self._points[stack] if p is not None]
        latest = self._latest
        if latest is not None and (not self._kept or self._kept[-1] is not latest):
            value = self._latest_totals.get(stack)
            if value is not None:
                out.append(_point(latest.t, value))
            elif not latest.truncated:
                out.append(SeriesPoint(latest.t, 0, 0))
        return tuple(out)

    def findings(
        self, *, min_growth_bytes: int = 4096, only: Iterable[Stack] | None = None
    ) -> tuple[Finding, ...]:
        """Every stack (or the ``only`` ones) judged and ranked leak-first (rank 1 = most likely leak)."""
        findings = [
            _finding(
                stack, *self.columns(stack), min_growth_bytes, exit_t=self.exit_t, series=self.series(stack)
            )
            for stack in (self._bytes if only is None else only)
        ]
        return rank(_unknown_if_untracked(f, self.untracked.get(f.stack, 0)) for f in findings)

    def growing(
        self, *, min_growth_bytes: int = 4096, top: int = 10, candidates: int = 50
    ) -> tuple[Finding, ...]:
        """The current top stacks while the probe runs: leaks first, then the largest.

        Only the ``candidates`` stacks that grew most since they were first seen are judged (a stack
        must grow by ``min_growth_bytes`` to be a leak), so the cost per snapshot stays bounded
        whatever the number of stacks.
        """
        scored: list[tuple[int, Stack]] = []
        for stack, column in self._bytes.items():
            latest = self._latest_totals.get(stack, (0, 0))[0]
            first = next((v for v in column if v != _UNKNOWN), 0)
            scored.append((latest - first, stack))
        scored.sort(key=lambda x: x[0], reverse=True)
        chosen = [stack for grown, stack in scored[:candidates]]
        return self.findings(min_growth_bytes=min_growth_bytes, only=chosen)[:top]


def _unknown_if_untracked(f: Finding, untracked: int) -> Finding:
    """A stack some of whose allocations the probe could not track gets no verdict: its series
    misses them (a full map also loses the frees of blocks it never held, which looked like a leak)."""
    if untracked <= 0:
        return f
    reason = (
        f"{UNKNOWN_MAP_FULL}, {untracked:,} of its allocations were not tracked (raise --map-keys); "
        f"what was tracked: {f.reason}"
    )
    return replace(f, verdict="unknown", confidence=0.0, reason=reason)


def _totals(snap: Snapshot) -> dict[Stack, tuple[int, int]]:
    totals: dict[Stack, tuple[int, int]] = {}
    for sample in snap.stacks:
        # one stack may appear twice in a block (same frames, different stack ids), or differ only
        # in allocator-internal innermost frames (see ``attribute``): add them
        stack = attribute(sample.stack)[0]
        old_bytes, old_count = totals.get(stack, (0, _NO_COUNT))
        count = old_count
        if sample.count is not None:
            count = (0 if old_count == _NO_COUNT else old_count) + sample.count
        totals[stack] = (old_bytes + sample.outstanding_bytes, count)
    return totals


def _point(t: float, value: tuple[int, int]) -> SeriesPoint:
    return SeriesPoint(t, value[0], None if value[1] == _NO_COUNT else value[1])


def _judge_columns(
    ts: FloatArray, ys: IntArray, min_growth_bytes: int
) -> tuple[SeriesStats, Verdict, float, str]:
    """The statistics and ``_judge``'s verdict of one stack's columns (times, bytes)."""
    st = _stats(ts, ys)
    verdict, confidence, reason = _judge_stats(st, ts, ys, min_growth_bytes)
    if verdict == "leak" and ys.size >= ROBUST_LAST_MIN:
        # the trend without the newest snapshot (its size was judged on the whole series)
        before = _stats(ts[:-1], ys[:-1])
        if _judge_stats(before, ts[:-1], ys[:-1], 1)[0] != "leak":
            verdict, confidence, _ = _judge_stats(st, ts, ys, min_growth_bytes, leak_ok=False)
            earlier = _judge_stats(before, ts[:-1], ys[:-1], min_growth_bytes)[2]
            reason = f"{NEWEST_ALONE} (+{_size(int(ys[-1] - ys[-2]))}); before it: {earlier}"
    return st, verdict, confidence, reason


def _judge_stats(
    st: SeriesStats, ts: FloatArray, ys: IntArray, min_growth_bytes: int, *, leak_ok: bool = True
) -> tuple[Verdict, float, str]:
    """``_judge`` of the statistics ``st`` of the columns (times, bytes)."""
    n = int(ys.size)
    return _judge(
        st,
        n=n,
        span=float(ts[-1] - ts[0]) if n else 0.0,
        last=int(ys[-1]) if n else 0,
        peak=int(ys.max()) if n else 0,
        min_growth_bytes=min_growth_bytes,
        leak_ok=leak_ok,
    )


def _finding(
    stack: Stack,
    ts: FloatArray,
    ys: IntArray,
    counts: IntArray,
    min_growth_bytes: int,
    *,
    exit_t: float | None = None,
    series: tuple[SeriesPoint, ...] | None = None,
) -> Finding:
    n = int(ys.size)
    last = int(ys[-1]) if n else 0
    last_count = int(counts[-1]) if n else _NO_COUNT
    st, verdict, confidence, reason = _judge_columns(ts, ys, min_growth_bytes)
    k = int(np.searchsorted(ts, exit_t)) if exit_t is not None and verdict != "leak" else 0
    if 2 <= k < n and ys[-1] < ys[k - 1]:
        # freed at exit: what grew while the program ran is judged so, whatever its clean-up freed
        held = int(ys[k - 1])
        before, v, c, r = _judge_columns(ts[:k], ys[:k], min_growth_bytes)
        if v in ("leak", "plateau", "unknown"):  # it grew while the program ran
            st, verdict, confidence, last, last_count = before, v, c, held, int(counts[k - 1])
            reason = (
                f"{r}; freed only when the program exited ({_size(held - int(ys[-1]))} released by "
                f"its clean-up), so judged on the {k} snapshots before the exit"
            )
    if attribute(stack)[1]:
        reason = ALLOCATOR_ONLY + reason
    present = np.flatnonzero(ys > 0)
    if present.size == 0:
        present = np.arange(n)
    if series is None:  # else the window's, the same points (SnapshotWindow.series)
        series = tuple(
            SeriesPoint(t=t, outstanding_bytes=b, count=None if c == _NO_COUNT else c)
            for t, b, c in zip(ts.tolist(), ys.tolist(), counts.tolist(), strict=True)
        )
    return Finding(
        rank=0,
        stack=stack,
        verdict=verdict,
        outstanding_bytes=last,
        count=None if last_count == _NO_COUNT else last_count,
        growth_bytes_per_sec=st.slope,
        confidence=round(confidence, 3),
        first_seen=float(ts[present[0]]) if n else 0.0,
        last_seen=float(ts[present[-1]]) if n else 0.0,
        series=series,
        reason=reason,
    )


# --- allocator-internal frames ------------------------------------------------------------------
#
# Probes take the stack when the outermost allocator call returns, so its innermost frame is the
# program's call site. A stack whose innermost frames are inside the allocator comes from a nested
# call recorded on its own: memleak hooks mmap, and the mmap that glibc's malloc/posix_memalign
# makes for a big block is recorded with the stack [sysmalloc_mmap, _int_memalign, ...] while the
# outer call is lost (bcc#4970). Those frames are trimmed: the stack is attributed to its first
# frame outside the allocator, and stacks that then coincide are one. A stack left with nothing but
# allocator or unknown frames ranks after every stack of the same verdict that names the program.

_ALLOCATOR_MODULE = re.compile(r"^lib(jemalloc|tcmalloc\w*|mimalloc\w*)\.so([.\d]*)$")
_LIBC_MODULE = re.compile(r"^(libc\.so[.\d]*|libc-[\d.]+\.so|ld-musl-[\w.-]+\.so[.\d]*|libc\.musl-[\w.-]+)$")
_LIBC_ALLOCATOR_INTERNALS = frozenset(
    {
        *ALLOCATOR_FUNCTIONS,
        "reallocarray",
        "cfree",
        "__libc_malloc",
        "__libc_calloc",
        "__libc_realloc",
        "__libc_free",
        "__libc_memalign",
        "__libc_valloc",
        "__libc_pvalloc",
        "__posix_memalign",
        "_int_malloc",
        "_int_realloc",
        "_int_free",
        "_int_memalign",
        "_mid_memalign",
        "sysmalloc",
        "sysmalloc_mmap",
        "sysmalloc_mmap_fallback",
        "malloc_consolidate",
        "ptmalloc_init",
        "tcache_init",
        "arena_get2",
        "new_heap",
        "alloc_new_heap",
        "mmap",
        "mmap64",
        "__mmap",
        "munmap",
        "__munmap",
        "mremap",
        "__mremap",
    }
)
_PREFIXED = re.compile(r"^(je|tc|mi)_\w+$")


def is_allocator_frame(frame: Frame) -> bool:
    """True for a frame inside an allocator (its internals, not the program's call site)."""
    module = (frame.module or "").rsplit("/", 1)[-1]
    if _ALLOCATOR_MODULE.match(module):
        return True
    name = frame.symbol.split("(", 1)[0].split(".", 1)[0].strip()  # "tcache_init.part.0" -> tcache_init
    if _LIBC_MODULE.match(module) and name in _LIBC_ALLOCATOR_INTERNALS:
        return True
    return _PREFIXED.match(name) is not None


ALLOCATOR_ONLY = "allocator-internal frames only (the program's call site is unknown); "


def attribute_snapshot(snap: Snapshot) -> Snapshot:
    """``snap`` with every stack attributed (see ``attribute``): what the analysis judges."""
    samples = []
    for sample in snap.stacks:
        stack = attribute(sample.stack)[0]
        samples.append(
            sample
            if stack is sample.stack
            else StackSample(stack, sample.outstanding_bytes, sample.count, sample.addresses)
        )
    return replace(snap, stacks=tuple(samples))


def attribute(stack: Stack) -> tuple[Stack, bool]:
    """(the stack without its innermost allocator-internal frames, True if no program frame is left).

    A stack that keeps nothing but unknown frames is returned whole and flagged.
    """
    frames = stack.frames
    cut = 0
    while cut < len(frames) and is_allocator_frame(frames[cut]):
        cut += 1
    rest = frames[cut:]
    if not rest or all(f.is_unknown for f in rest):
        return stack, cut > 0
    return (Stack(rest) if cut else stack), False


def rank(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Findings ordered leak-first with dense ranks from 1.

    Order: verdict (leak, plateau, transient, stable); within a verdict, stacks that name the
    program before those made of allocator frames only (``attribute``); leaks by growth rate
    weighted by confidence, the others by outstanding bytes.
    """

    def order(f: Finding) -> tuple[int, bool, float, int, str]:
        weight = f.growth_bytes_per_sec * max(f.confidence, 0.05) if f.verdict == "leak" else 0.0
        verdict = VERDICT_ORDER.index(f.verdict)
        return (verdict, attribute(f.stack)[1], -weight, -f.outstanding_bytes, f.stack.key)

    ordered = sorted(findings, key=order)
    return tuple(replace(f, rank=i) for i, f in enumerate(ordered, start=1))


def stack_series(snapshots: Sequence[Snapshot]) -> dict[Stack, list[SeriesPoint]]:
    """Each stack's (t, outstanding bytes, count) over the snapshots, sorted by time.

    A stack missing from a complete snapshot had nothing outstanding (0); missing from a snapshot
    truncated to its top N, it is unknown, and that snapshot is skipped for it.
    """
    window = SnapshotWindow(capacity=max(len(snapshots), 4))
    for snap in sorted(snapshots, key=lambda s: s.t):
        window.add(snap)
    out: dict[Stack, list[SeriesPoint]] = {}
    for stack in window._bytes:
        ts, ys, counts = window.columns(stack)
        out[stack] = [
            SeriesPoint(t=t, outstanding_bytes=b, count=None if c == _NO_COUNT else c)
            for t, b, c in zip(ts.tolist(), ys.tolist(), counts.tolist(), strict=True)
        ]
    return out


def window_of(snapshots: Iterable[Snapshot], capacity: int = WINDOW_SNAPSHOTS) -> SnapshotWindow:
    """A SnapshotWindow holding ``snapshots`` (sorted by time first)."""
    window = SnapshotWindow(capacity)
    for snap in sorted(snapshots, key=lambda s: s.t):
        window.add(snap)
    return window


def analyze_snapshots(snapshots: Sequence[Snapshot], *, min_growth_bytes: int = 4096) -> tuple[Finding, ...]:
    """Findings for every stack seen, ranked leak-first (rank 1 = most likely leak).

    More than ``WINDOW_SNAPSHOTS`` snapshots are judged on an evenly spaced subset of them (always
    the first and the last), as a live session keeps them.
    """
    return window_of(snapshots).findings(min_growth_bytes=min_growth_bytes)


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _size(n: float) -> str:
    sign = "-" if n < 0 else ""
    value = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} GiB"
