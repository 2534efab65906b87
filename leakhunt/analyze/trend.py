"""Judge process memory series from a scan: which processes leak?

The signal judged is anonymous resident memory plus swap (``MemSample.anon``): RSS alone also moves
with file pages, and a leak under memory pressure moves from RSS to swap. Verdicts:

- ``leak-suspect``: sustained growth (Theil-Sen growth over the window >= ``min_growth_bytes``, a
  significant Mann-Kendall trend, a line that fits, and the last third of the window still growing);
- ``plateau``: grew by >= ``min_growth_bytes``, then the last third is flat (a cache that filled);
- ``sawtooth``: rises and falls (>= 2 significant drops); judged on its lower envelope (the troughs
  after each drop), so a sawtooth whose floor keeps rising is a ``leak-suspect`` again;
- ``growing``: grew, but too few samples or too noisy a trend to say more; or a slow leak: less
  than ``min_growth_bytes`` so far, but a clean, significant linear trend at or above
  ``min_rate_per_hour`` (a 16 KiB/s leak is 59 MB an hour yet only 640 KiB in a 40 s scan); the
  note says how long a scan would reach ``min_growth_bytes`` and confirm it;
- ``stable``: grew by less than ``min_growth_bytes`` and not at a steady rate above
  ``min_rate_per_hour`` (KB of noise are never suspects).

``address_space_growth`` is a separate flag (VSZ grew far more than RSS): thread stacks, arenas and
reservations do that too, so on its own it never makes a suspect.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from leakhunt.analyze.stacks import mann_kendall, theil_sen
from leakhunt.model import (
    KernelTrend,
    MemSample,
    ProcessTrend,
    ScanResult,
    ScanVerdict,
    Series,
    SlabTrend,
    TrendEvidence,
)

MIN_GROWTH_BYTES = 1 << 20
# A clean linear trend at this rate or more is a suspect even before it reaches MIN_GROWTH_BYTES
# (10 MB an hour: the default of Coroot, the fleet tool that flags leaks from memory trends).
MIN_RATE_PER_HOUR = 10_000_000
# "Clean": the trend line explains at least this much of the variance (R^2) ...
STEADY_FIT = 0.9
# ... and the last third still grows at this fraction of the whole window's slope or more.
STEADY_TAIL = 0.5
# Mann-Kendall z above which growth counts as a sustained trend (one-sided p ~ 0.001).
MIN_TREND_Z = 3.0
# A fit worse than this (R^2 of the trend line) is too noisy to call a leak: ``growing``.
MIN_FIT = 0.5
# Fewer points than this cannot tell a leak from a step: at most ``growing``.
MIN_POINTS = 8
# Theil-Sen and Mann-Kendall are O(n^2): judge at most this many evenly spaced samples.
MAX_POINTS = 120
# Points judged for a series whose every signal moved less than min_growth / 8.
QUIET_POINTS = 40
# The tail (last third) grew less than this fraction of min_growth and this fraction of the overall
# slope: the series has flattened.
FLAT_TAIL_GROWTH = 0.25
FLAT_TAIL_SLOPE = 0.2
# VSZ growth at least this many times min_growth, and this many times the RSS growth.
ADDRESS_SPACE_MIN_FACTOR = 8
ADDRESS_SPACE_RATIO = 4.0
RATIO_CAP = 99.0

VERDICT_RANK: dict[ScanVerdict, int] = {
    "leak-suspect": 0,
    "growing": 1,
    "sawtooth": 2,
    "plateau": 3,
    "stable": 4,
}
SUSPECT_VERDICTS: frozenset[ScanVerdict] = frozenset({"leak-suspect", "growing"})


@dataclass(frozen=True)
class Judgement:
    verdict: ScanVerdict
    evidence: TrendEvidence


def thin(samples: Sequence[MemSample], limit: int = MAX_POINTS) -> list[MemSample]:
    """At most ``limit`` samples, evenly spaced, always keeping the first and the last."""
    n = len(samples)
    if n <= limit:
        return list(samples)
    step = (n - 1) / (limit - 1)
    return [samples[round(i * step)] for i in range(limit)]


def fit_quality(ts: Sequence[float], ys: Sequence[float], slope: float) -> float:
    """R^2 (0..1) of the Theil-Sen line through ``ys``; 1.0 for a flat series fitted flat."""
    if len(ys) < 2:
        return 0.0
    intercept = _median([y - slope * t for t, y in zip(ts, ys, strict=True)])
    mean = sum(ys) / len(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * t)) ** 2 for t, y in zip(ts, ys, strict=True))
    if ss_tot <= 0:
        return 1.0 if ss_res <= 0 else 0.0
    return min(max(1.0 - ss_res / ss_tot, 0.0), 1.0)


def count_drops(ts: Sequence[float], ys: Sequence[float], slope: float, min_drop: float) -> list[int]:
    """Indices i where ys[i] falls from ys[i-1] by at least ``min_drop`` and a quarter of the range.

    The range is taken around the fitted trend (``ys - slope * t``): a sawtooth on a rising floor
    spans far more than one tooth, and its drops must still count.
    """
    if len(ys) < 2:
        return []
    residual = [y - slope * t for t, y in zip(ts, ys, strict=True)]
    threshold = max(min_drop, 0.25 * (max(residual) - min(residual)))
    return [i for i in range(1, len(ys)) if ys[i - 1] - ys[i] >= threshold > 0]


def lower_envelope(
    ts: Sequence[float], ys: Sequence[float], drops: Sequence[int]
) -> list[tuple[float, float]]:
    """The trough (time, value) of each segment after a drop.

    The segment before the first drop is left out: the scan may have started anywhere in a rise,
    so its minimum is not a trough.
    """
    bounds = [*drops, len(ys)]
    out: list[tuple[float, float]] = []
    for start, end in itertools.pairwise(bounds):
        segment = range(start, end)
        low = min(segment, key=lambda i: ys[i])
        out.append((ts[low], ys[low]))
    return out


def troughs(
    samples: Sequence[MemSample], *, min_growth_bytes: int = MIN_GROWTH_BYTES
) -> list[tuple[float, float]]:
    """The lower envelope judge() looks at for a sawtooth: (t, anon) of each trough after a drop.

    Empty when the series has fewer than two drops (no sawtooth). For charts.
    """
    pts = thin(samples)
    ts = [s.t for s in pts]
    anon = [float(s.anon) for s in pts]
    drops = count_drops(ts, anon, theil_sen(ts, anon), max(min_growth_bytes, 1) / 2)
    return lower_envelope(ts, anon, drops) if len(drops) >= 2 else []


def judge(
    samples: Sequence[MemSample],
    *,
    min_growth_bytes: int = MIN_GROWTH_BYTES,
    min_rate_per_hour: float = MIN_RATE_PER_HOUR,
) -> Judgement:
    """The verdict on one process's series (sorted by time) and the numbers behind it."""
    pts = thin(samples)
    if len(pts) > QUIET_POINTS and _quiet(pts, min_growth_bytes / 8):
        # Most processes barely move: their numbers are as well measured on fewer points, and a
        # whole-host scan judges thousands of them.
        pts = thin(samples, QUIET_POINTS)
    n = len(pts)
    ts = [s.t for s in pts]
    anon = [float(s.anon) for s in pts]
    rss = [float(s.rss) for s in pts]
    vms = [float(s.vms) for s in pts]
    span = ts[-1] - ts[0] if n >= 2 else 0.0
    min_growth = float(max(min_growth_bytes, 1))

    slope = theil_sen(ts, anon)
    slope_rss = theil_sen(ts, rss)
    slope_vms = theil_sen(ts, vms)
    z, _ = mann_kendall(anon)
    r2 = fit_quality(ts, anon, slope)
    growth = int(anon[-1] - anon[0]) if n else 0
    ratio = _late_slope_ratio(ts, anon, span)
    drop_idx = count_drops(ts, anon, slope, min_growth / 2)
    vms_growth = slope_vms * span
    rss_growth = max(slope_rss * span, float(rss[-1] - rss[0]) if n else 0.0, 0.0)
    address_space = vms_growth >= ADDRESS_SPACE_MIN_FACTOR * min_growth and vms_growth >= (
        ADDRESS_SPACE_RATIO * rss_growth
    )

    def done(
        verdict: ScanVerdict, note: str, *, slope_used: float = slope, growth_used: int = growth
    ) -> Judgement:
        flag = "; VSZ grew far more than RSS (address-space growth)" if address_space else ""
        return Judgement(
            verdict,
            TrendEvidence(
                slope_bytes_per_sec=_finite(slope_used),
                slope_rss_bytes_per_sec=_finite(slope_rss),
                slope_vms_bytes_per_sec=_finite(slope_vms),
                trend_z=_finite(z),
                r2=_finite(r2),
                growth_bytes=growth_used,
                late_slope_ratio=_finite(ratio),
                drops=len(drop_idx),
                address_space_growth=address_space,
                note=note + flag,
            ),
        )

    if n < 2:
        return done("stable", f"{n} sample: nothing to judge")
    head = (
        f"anon+swap {_signed(growth)} over {span:.0f} s, Theil-Sen {_rate(slope)}, "
        f"Mann-Kendall z={z:.1f}, fit {r2:.2f}"
    )

    if len(drop_idx) >= 2 and _teeth_rise(anon, drop_idx):
        troughs = lower_envelope(ts, anon, drop_idx)
        floor_ts = [t for t, _ in troughs]
        floor_ys = [y for _, y in troughs]
        floor_slope = theil_sen(floor_ts, floor_ys) if len(troughs) >= 2 else 0.0
        floor_growth = int(floor_ys[-1] - floor_ys[0]) if troughs else 0
        steps = list(itertools.pairwise(floor_ys))
        # Most troughs higher than the one before: one trough caught early or late is no reason to doubt.
        rising = bool(steps) and sum(b >= a for a, b in steps) >= 0.75 * len(steps)
        # ... and lying on a line: troughs of random noise can drift up by chance, a leak's floor climbs.
        rising = rising and (len(troughs) < 3 or fit_quality(floor_ts, floor_ys, floor_slope) >= 0.6)
        note = (
            f"{len(drop_idx)} drops; lower envelope ({len(troughs)} troughs) {_signed(floor_growth)}, "
            f"{_rate(floor_slope)}; peaks {_size(max(anon))}"
        )
        # A trough is only known to within one sample's rise: sampled at a drifting phase of the
        # tooth, a flat floor seems to climb by up to one step. Growth must clear that too.
        drop_set = set(drop_idx)
        step_rise = max((anon[i] - anon[i - 1] for i in range(1, n) if i not in drop_set), default=0.0)
        needed = min_growth + max(step_rise, 0.0)
        if floor_growth >= needed and floor_slope * span >= needed and rising:
            return done(
                "leak-suspect",
                "sawtooth whose floor keeps rising: " + note,
                slope_used=floor_slope,
                growth_used=floor_growth,
            )
        return done("sawtooth", note, slope_used=floor_slope, growth_used=floor_growth)

    k = max(1, n // 8)
    robust_growth = _median(anon[-k:]) - _median(anon[:k])
    trend_growth = slope * span

    tail = [i for i in range(n) if ts[i] >= ts[-1] - span / 3]
    if len(tail) < 3:
        tail = list(range(max(n - 3, 0), n))
    tail_ts = [ts[i] for i in tail]

    def tail_slope_() -> float:
        return theil_sen(tail_ts, [anon[i] for i in tail])

    if max(trend_growth, robust_growth) < min_growth:
        # cheap tests first: thousands of quiet processes end here
        steady = (
            n >= MIN_POINTS
            and slope * 3600 >= min_rate_per_hour > 0
            and z >= MIN_TREND_Z
            and r2 >= STEADY_FIT
            and tail_slope_() >= STEADY_TAIL * slope
        )
        if steady:
            confirm = math.ceil(min_growth / slope)
            return done(
                "growing",
                f"{head}; a steady {_size(slope * 3600)}/h, above the {_size(min_rate_per_hour)}/h "
                f"rate threshold, but under the {_size(min_growth)} minimum growth so far: scan "
                f"at least {confirm} s to confirm",
            )
        return done("stable", f"{head}: below the {_size(min_growth)} minimum growth")

    tail_slope = tail_slope_()
    tail_growth = tail_slope * (tail_ts[-1] - tail_ts[0])
    early_slope = max(slope, robust_growth / span if span > 0 else 0.0)
    if tail_growth < FLAT_TAIL_GROWTH * min_growth and tail_slope <= FLAT_TAIL_SLOPE * early_slope:
        if robust_growth >= min_growth:
            return done(
                "plateau",
                f"{head}; grew {_size(robust_growth)}, then flat: last third {_rate(tail_slope)}",
            )
        return done("stable", f"{head}; last third flat ({_rate(tail_slope)})")
    if n < MIN_POINTS:
        return done("growing", f"{head}; only {n} samples: too short to call it a leak")
    if z < MIN_TREND_Z:
        return done("growing", f"{head}; trend not significant (z < {MIN_TREND_Z:.0f}): noisy")
    if r2 < MIN_FIT:
        return done("growing", f"{head}; the trend line fits poorly (R² < {MIN_FIT}): noisy")
    if trend_growth < min_growth:
        return done("growing", f"{head}; the fitted trend explains less than {_size(min_growth)}")
    return done("leak-suspect", f"{head}; still growing in the last third ({_rate(tail_slope)})")


def rank_key(trend: ProcessTrend) -> tuple[int, float, int]:
    """Suspects first, then by growth rate, then by size."""
    latest = trend.samples[-1].anon if trend.samples else 0
    return (VERDICT_RANK[trend.verdict], -trend.evidence.slope_bytes_per_sec, -latest)


def judge_all(
    series: Iterable[Series],
    *,
    min_growth_bytes: int = MIN_GROWTH_BYTES,
    min_rate_per_hour: float = MIN_RATE_PER_HOUR,
) -> tuple[ProcessTrend, ...]:
    """Judge every series and rank them suspects first."""
    trends = []
    for s in series:
        if not s.samples:
            continue
        j = judge(s.samples, min_growth_bytes=min_growth_bytes, min_rate_per_hour=min_rate_per_hour)
        trends.append(
            ProcessTrend(
                key=s.key,
                name=s.name,
                cmdline=s.cmdline,
                username=s.username,
                verdict=j.verdict,
                evidence=j.evidence,
                samples=s.samples,
            )
        )
    trends.sort(key=rank_key)
    return tuple(trends)


def suspects(scan: ScanResult) -> list[ProcessTrend]:
    """The processes worth an investigation, in rank order."""
    return [p for p in scan.processes if p.verdict in SUSPECT_VERDICTS]


# --- helpers ------------------------------------------------------------------------------------


def _teeth_rise(ys: Sequence[float], drops: Sequence[int]) -> bool:
    """A sawtooth climbs between its drops: at least 4/5 of the other steps go up or stay, and none
    falls by half as much as the smallest drop.

    Random noise also has large falls, but between them it goes down often, and by every size.
    """
    drop_set = set(drops)
    others = [i for i in range(1, len(ys)) if i not in drop_set]
    if not others:
        return True
    smallest_drop = min(ys[i - 1] - ys[i] for i in drops)
    if max(ys[i - 1] - ys[i] for i in others) > smallest_drop / 2:
        return False
    return sum(ys[i] >= ys[i - 1] for i in others) >= 0.8 * len(others)


def _quiet(pts: Sequence[MemSample], limit: float) -> bool:
    for values in ([s.anon for s in pts], [s.rss for s in pts], [s.vms for s in pts]):
        if max(values) - min(values) >= limit:
            return False
    return True


def _late_slope_ratio(ts: Sequence[float], ys: Sequence[float], span: float) -> float:
    if span <= 0:
        return 1.0
    mid = ts[0] + span / 2
    first = [(t, y) for t, y in zip(ts, ys, strict=True) if t <= mid]
    second = [(t, y) for t, y in zip(ts, ys, strict=True) if t >= mid]
    s1 = theil_sen([t for t, _ in first], [y for _, y in first])
    s2 = theil_sen([t for t, _ in second], [y for _, y in second])
    # Below one byte a second both halves are flat: no change in slope.
    if abs(s1) < 1.0:
        return 1.0 if abs(s2) < 1.0 else math.copysign(RATIO_CAP, s2)
    return max(min(s2 / s1, RATIO_CAP), -RATIO_CAP)


def _median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _size(n: float) -> str:
    value = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _signed(n: float) -> str:
    return ("+" if n >= 0 else "-") + _size(n)


def _rate(bytes_per_sec: float) -> str:
    return f"{_signed(bytes_per_sec)}/s ({bytes_per_sec * 3600 / 1e6:+.1f} MB/h)"


KERNEL_TOP_CACHES = 10


def judge_kernel(
    samples: Sequence[MemSample],
    caches: dict[str, list[tuple[float, int]]],
    *,
    min_growth_bytes: int = MIN_GROWTH_BYTES,
    min_rate_per_hour: float = MIN_RATE_PER_HOUR,
    note: str = "",
) -> KernelTrend | None:
    """The kernel's unreclaimable slab judged like a process's memory, with the caches that grew most.

    A slab cache that fills and stays is a plateau here as a process's cache is; a cache's growth is
    the Theil-Sen slope of its bytes in use. None without samples."""
    if not samples:
        return None
    j = judge(samples, min_growth_bytes=min_growth_bytes, min_rate_per_hour=min_rate_per_hour)
    grown: list[SlabTrend] = []
    for name, series in caches.items():
        if len(series) < 2:
            continue
        first, last = series[0][1], series[-1][1]
        slope = theil_sen([t for t, _ in series], [float(v) for _, v in series])
        if last > first and slope > 0:
            grown.append(SlabTrend(name, first, last, slope))
    grown.sort(key=lambda c: (-c.slope_bytes_per_sec, -(c.last_bytes - c.first_bytes), c.name))
    return KernelTrend(
        verdict=j.verdict,
        evidence=j.evidence,
        samples=tuple(samples),
        caches=tuple(grown[:KERNEL_TOP_CACHES]),
        note=note,
    )
