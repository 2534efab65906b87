"""The pure-Python statistics of leakhunt.analyze.stacks before they were vectorised (O(n^2) per stack).

Kept only as the reference the new implementation is checked against (tests/unit/test_stats_reference.py)
and timed against (scripts/bench_long_runs.py). Not used by leakhunt itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from leakhunt.model import VERDICT_ORDER, Finding, SeriesPoint, Snapshot, Stack, Verdict

# A leak must keep at least this share of its whole-run slope in the second half of the run;
# below it the stack "grew then stopped" (plateau).
LATE_SLOPE_RATIO = 0.25
# Mann-Kendall z below this is not a trend (z=1.0 ~ 84% one-sided). Low on purpose: confidence
# carries the doubt, and three snapshots of a perfectly steady leak give z=1.04.
MIN_TREND_Z = 1.0


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


def theil_sen(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Median of pairwise slopes: robust to outliers (up to ~29% of them). 0.0 for < 2 points."""
    slopes: list[float] = []
    n = len(ts)
    for i in range(n):
        for j in range(i + 1, n):
            dt = ts[j] - ts[i]
            if dt > 0:
                slopes.append((ys[j] - ys[i]) / dt)
    if not slopes:
        return 0.0
    slopes.sort()
    mid = len(slopes) // 2
    return slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2


def mann_kendall(ys: Sequence[float]) -> tuple[float, float]:
    """(z, tau) of the Mann-Kendall trend test; (0, 0) for fewer than 3 points."""
    n = len(ys)
    if n < 3:
        return 0.0, 0.0
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            diff = ys[j] - ys[i]
            s += (diff > 0) - (diff < 0)
    # Ties shrink the variance; a series of equal values has none (no trend at all).
    counts: dict[float, int] = {}
    for y in ys:
        counts[y] = counts.get(y, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(c * (c - 1) * (2 * c + 5) for c in counts.values())) / 18
    tau = s / (n * (n - 1) / 2)
    if var <= 0:
        return 0.0, tau
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return z, tau


def series_stats(points: Sequence[SeriesPoint]) -> SeriesStats:
    """Trend figures of one stack's series (points sorted by time)."""
    ts = [p.t for p in points]
    ys = [float(p.outstanding_bytes) for p in points]
    if not points:
        return SeriesStats(0.0, 0.0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0)
    first, last = points[0].outstanding_bytes, points[-1].outstanding_bytes
    peak = max(p.outstanding_bytes for p in points)
    mid_t = (ts[0] + ts[-1]) / 2
    late = [i for i, t in enumerate(ts) if t >= mid_t]
    if len(late) < 2:  # (session 8: the second half holds the last two points at least, as the tail does)
        late = list(range(max(len(ts) - 2, 0), len(ts)))
    late_slope = theil_sen([ts[i] for i in late], [ys[i] for i in late]) if len(late) >= 2 else 0.0
    late_growth = last - points[late[0]].outstanding_bytes if late else 0
    tail_from = ts[-1] - (ts[-1] - ts[0]) / 3
    tail = [i for i, t in enumerate(ts) if t >= tail_from]
    if len(tail) < 2:
        tail = list(range(max(len(ts) - 2, 0), len(ts)))
    tail_growth = last - points[tail[0]].outstanding_bytes
    tail_span = ts[-1] - ts[tail[0]]
    z, tau = mann_kendall(ys)
    vanished = 0
    drops = 0
    for prev, cur in itertools.pairwise(points):
        if prev.outstanding_bytes > 0 and cur.outstanding_bytes == 0:
            vanished += 1
        if peak > 0 and prev.outstanding_bytes - cur.outstanding_bytes > peak / 4:
            drops += 1
    return SeriesStats(
        slope=theil_sen(ts, ys),
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


def classify(points: Sequence[SeriesPoint], min_growth_bytes: int = 4096) -> tuple[Verdict, float, str]:
    """(verdict, confidence 0..1, reason) for one stack's series."""
    verdict, confidence, reason = _classify(points, min_growth_bytes, leak_ok=True)
    # from 6 snapshots on, a leak must be one without its newest snapshot too
    if verdict == "leak" and len(points) >= 6 and _classify(points[:-1], 1, leak_ok=True)[0] != "leak":
        verdict, confidence, _ = _classify(points, min_growth_bytes, leak_ok=False)
        jump = points[-1].outstanding_bytes - points[-2].outstanding_bytes
        earlier = _classify(points[:-1], min_growth_bytes, leak_ok=True)[2]
        reason = (
            f"only its newest snapshot rose in the last third, and one snapshot is not a trend "
            f"(+{_size(jump)}); before it: {earlier}"
        )
    return verdict, confidence, reason


def _classify(
    points: Sequence[SeriesPoint], min_growth_bytes: int, *, leak_ok: bool
) -> tuple[Verdict, float, str]:
    st = series_stats(points)
    n = len(points)
    if n < 2:
        return "stable", 0.0, "seen in one snapshot only: growth unknown"
    span = points[-1].t - points[0].t
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
    peak = max(p.outstanding_bytes for p in points)
    if st.vanished or (st.drops and points[-1].outstanding_bytes < 0.5 * peak):
        confidence = _clip(0.5 + 0.25 * (st.vanished + st.drops))
        reason = f"comes and goes: fell to zero {st.vanished}x, dropped by >1/4 of its peak {st.drops}x"
        return "transient", confidence, reason
    if n == 2 and st.growth >= min_growth_bytes:
        reason = (
            f"unknown: too few snapshots: grew {_size(st.growth)} between its only two snapshots, "
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


def stack_series(snapshots: Sequence[Snapshot]) -> dict[Stack, list[SeriesPoint]]:
    """Each stack's (t, outstanding bytes, count) over the snapshots, sorted by time.

    A stack missing from a complete snapshot had nothing outstanding (0); missing from a snapshot
    truncated to its top N, it is unknown, and that snapshot is skipped for it.
    """
    ordered = sorted(snapshots, key=lambda s: s.t)
    per_snap: list[dict[Stack, tuple[int, int | None]]] = []
    for snap in ordered:
        totals: dict[Stack, tuple[int, int | None]] = {}
        for sample in snap.stacks:
            # one stack may appear twice in a block (same frames, different stack ids): add them
            old_bytes, old_count = totals.get(sample.stack, (0, None))
            count = old_count
            if sample.count is not None:
                count = (old_count or 0) + sample.count
            totals[sample.stack] = (old_bytes + sample.outstanding_bytes, count)
        per_snap.append(totals)
    seen: dict[Stack, list[SeriesPoint]] = {}
    for totals in per_snap:
        for stack in totals:
            seen.setdefault(stack, [])
    for stack, points in seen.items():
        for snap, totals in zip(ordered, per_snap, strict=True):
            value = totals.get(stack)
            if value is None:
                if snap.truncated:
                    continue
                value = (0, 0)
            points.append(SeriesPoint(t=snap.t, outstanding_bytes=value[0], count=value[1]))
    return seen


def analyze_snapshots(snapshots: Sequence[Snapshot], *, min_growth_bytes: int = 4096) -> tuple[Finding, ...]:
    """Findings for every stack seen, ranked leak-first (rank 1 = most likely leak).

    Order: verdict (leak, plateau, transient, stable); leaks by growth rate weighted by confidence,
    the others by outstanding bytes.
    """
    findings: list[Finding] = []
    for stack, points in stack_series(snapshots).items():
        verdict, confidence, reason = classify(points, min_growth_bytes)
        st = series_stats(points)
        present = [p for p in points if p.outstanding_bytes > 0] or points
        last = points[-1]
        findings.append(
            Finding(
                rank=0,
                stack=stack,
                verdict=verdict,
                outstanding_bytes=last.outstanding_bytes,
                count=last.count,
                growth_bytes_per_sec=st.slope,
                confidence=round(confidence, 3),
                first_seen=present[0].t,
                last_seen=present[-1].t,
                series=tuple(points),
                reason=reason,
            )
        )

    def order(f: Finding) -> tuple[int, float, int, str]:
        weight = f.growth_bytes_per_sec * max(f.confidence, 0.05) if f.verdict == "leak" else 0.0
        return (VERDICT_ORDER.index(f.verdict), -weight, -f.outstanding_bytes, f.stack.key)

    findings.sort(key=order)
    return tuple(replace(f, rank=i) for i, f in enumerate(findings, start=1))


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
