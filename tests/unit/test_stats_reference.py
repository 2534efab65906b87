"""The vectorised statistics and the bounded snapshot window against the pure-Python reference.

tests/reference_stacks.py is the analysis as it was before (pairwise loops in Python). On every case the
old one handled (the unit tests' series, the captured fixtures, random series) the new one must give the
same verdicts, ranks and confidences, and slopes within 1% (they are in fact equal: the same pairs and the
same float operations, as long as a series has at most STAT_POINTS points).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.analyze import stacks
from leakhunt.model import Finding, Investigation, SeriesPoint, Snapshot, Stack, StackSample
from leakhunt.parse import ParseStats
from leakhunt.parse.bpftrace import parse_bpftrace
from leakhunt.parse.memleak import parse_memleak
from leakhunt.report import jsonio
from tests import reference_stacks as ref
from tests.unit.test_stacks import snapshots, stack

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def assert_same(new: Sequence[Finding], old: Sequence[Finding]) -> None:
    assert [(f.rank, f.stack, f.verdict) for f in new] == [(f.rank, f.stack, f.verdict) for f in old]
    for a, b in zip(new, old, strict=True):
        assert a.growth_bytes_per_sec == pytest.approx(b.growth_bytes_per_sec, rel=0.01, abs=1e-9)
        assert a.confidence == pytest.approx(b.confidence, abs=0.001)
        assert a.series == b.series
        assert (a.outstanding_bytes, a.count, a.first_seen, a.last_seen) == (
            b.outstanding_bytes,
            b.count,
            b.first_seen,
            b.last_seen,
        )
        # a stack of allocator frames only says so first (issue 11), the reference predates it
        assert a.reason.removeprefix(stacks.ALLOCATOR_ONLY) == b.reason


def compare(snaps: Sequence[Snapshot], min_growth: int = 4096) -> tuple[Finding, ...]:
    new = stacks.analyze_snapshots(snaps, min_growth_bytes=min_growth)
    # the reference judges the stacks the analysis judges: allocator-internal frames trimmed
    attributed = [stacks.attribute_snapshot(s) for s in snaps]
    assert_same(new, ref.analyze_snapshots(attributed, min_growth_bytes=min_growth))
    return new


# --- the unit tests' series ----------------------------------------------------------------------

UNIT_CASES: dict[str, tuple[dict[str, list[int]], float, bool]] = {
    "leak vs cache": (
        {
            "cache_fill": [2_000_000, 4_000_000] + [4_000_000] * 6,
            "leaky_alloc": [i * 10_000 for i in range(1, 9)],
            "lru_put": [100_000, 256_000]
            + [256_000 + random.Random(i).randint(-4096, 4096) for i in range(6)],
            "churn": [0, 3000, 0, 0, 5000, 0, 2000, 0],
            "init": [50_000] * 8,
        },
        5.0,
        False,
    ),
    "noisy leak": (
        {
            "slow_leak": [i * 8192 + random.Random(7).randint(-6000, 6000) for i in range(1, 13)],
            "big": [10_000_000] * 12,
        },
        5.0,
        False,
    ),
    "warmup": ({"warmup": [10_000 * min(i, 5) for i in range(1, 11)]}, 5.0, False),
    "cache mid": ({"cache_fill": [0, 0, 3_072_000, 4_096_000, 4_096_000]}, 2.0, False),
    "late leak": ({"late": [0, 0, 15_360, 35_328, 55_296]}, 2.0, False),
    "tiny": ({"tiny": [100, 200, 300, 400, 500]}, 5.0, False),
    "one": ({"x": [1_000_000]}, 5.0, False),
    "freed": ({"x": [10_000, 0, 20_000, 0, 10_000]}, 5.0, False),
    "truncated": ({"leak": [10_000, 20_000, 30_000, 40_000, 50_000], "other": [5, 0, 7, 9, 0]}, 5.0, True),
}


@pytest.mark.parametrize("name", sorted(UNIT_CASES))
def test_unit_cases_match_the_reference(name: str) -> None:
    series, interval, truncated = UNIT_CASES[name]
    snaps = snapshots(series, interval, truncated)
    compare(snaps)
    compare(snaps, min_growth=100)


def test_truncated_snapshot_without_the_stack_matches_the_reference() -> None:
    snaps = snapshots({"leak": [10_000, 20_000, 30_000, 40_000, 50_000]}, truncated=True)
    snaps[2] = Snapshot(t=snaps[2].t, stacks=(), truncated=True)
    (finding,) = compare(snaps)
    assert [p.t for p in finding.series] == [0.0, 5.0, 15.0, 20.0]


def test_duplicate_stacks_with_and_without_counts_match_the_reference() -> None:
    s = stack("dup")
    snaps = [
        Snapshot(
            t=float(i),
            stacks=(StackSample(s, 1000 * i, None), StackSample(s, 1000 * i, 1 if i % 2 else None)),
        )
        for i in range(1, 6)
    ]
    compare(snaps)


# --- captured fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["bcc-0.26-periodic-a.txt", "bcc-0.26-periodic-cpp.txt", "bcc-0.26-kernel.txt"],
)
def test_memleak_fixtures_match_the_reference(name: str) -> None:
    snaps = list(parse_memleak((FIXTURES / name).read_text().splitlines(), ParseStats()))
    assert snaps
    compare(snaps)


@pytest.mark.parametrize(
    "name",
    [
        "bpftrace-0.17-protocol.json",
        "bpftrace-0.17-protocol.txt",
        "bpftrace-0.17-protocol-default-stack.txt",
        "handmade/bpftrace-0.24-protocol.json",
    ],
)
def test_bpftrace_fixtures_match_the_reference(name: str) -> None:
    snaps = list(parse_bpftrace((FIXTURES / name).read_text().splitlines(), ParseStats()))
    assert snaps
    compare(snaps)


@pytest.mark.parametrize(
    "path",
    sorted(str(p.relative_to(FIXTURES)) for p in (FIXTURES / "reports").glob("investigation-*.json"))
    + sorted(str(p.relative_to(FIXTURES)) for p in (FIXTURES / "diff").glob("investigation-*.json")),
)
def test_saved_investigations_match_the_reference_and_their_verdicts(path: str) -> None:
    inv = jsonio.load(FIXTURES / path)
    assert isinstance(inv, Investigation)
    new = compare(inv.snapshots)
    # and the verdicts these reports were written with (by the old analysis) are unchanged
    assert [(f.stack, f.verdict) for f in new] == [(f.stack, f.verdict) for f in inv.findings]


# --- the statistics themselves -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-(10**9), 10**9), min_size=0, max_size=60),
    st.integers(0, 3),
)
def test_theil_sen_and_mann_kendall_equal_the_reference(values: list[int], spacing: int) -> None:
    ys = [float(v) for v in values]
    # spacing 0 repeats times (pairs with dt = 0 are left out), the others are irregular
    ts = [float(i // 2 if spacing == 0 else i * spacing + (i % 3) * 0.25) for i in range(len(ys))]
    assert stacks.theil_sen(ts, ys) == ref.theil_sen(ts, ys)
    assert stacks.mann_kendall(ys) == ref.mann_kendall(ys)


def test_statistics_with_many_ties_equal_the_reference() -> None:
    rng = random.Random(3)
    for n in (3, 10, 57, 200):
        ys = [float(rng.choice((0, 4096, 8192))) for _ in range(n)]
        ts = [float(i) for i in range(n)]
        assert stacks.theil_sen(ts, ys) == ref.theil_sen(ts, ys)
        z_new, tau_new = stacks.mann_kendall(ys)
        z_old, tau_old = ref.mann_kendall(ys)
        assert math.isclose(z_new, z_old, rel_tol=1e-12) and tau_new == tau_old


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10**9), max_size=4),
        max_size=40,
    ),
    st.booleans(),
)
def test_random_runs_match_the_reference(raw: list[dict[str, int]], truncated: bool) -> None:
    snaps = [
        Snapshot(
            t=float(i),
            stacks=tuple(StackSample(stack(k), v, v // 100 if k != "d" else None) for k, v in d.items()),
            truncated=truncated and i % 3 == 1,
        )
        for i, d in enumerate(raw)
    ]
    compare(snaps)


def shaped_run(n: int) -> list[Snapshot]:
    """A leak, a cache, churn and a stable stack over n one-second snapshots."""
    rng = random.Random(n)
    leak, cache, churn, init = stack("leak"), stack("cache"), stack("churn"), stack("init")
    out = []
    for i in range(n):
        samples = [
            StackSample(leak, 4096 * i + rng.randint(0, 2048), i),
            StackSample(cache, 4_000_000 * min(i, n // 4) // max(n // 4, 1) + 1, 7),
            StackSample(init, 50_000, 3),
        ]
        if rng.random() < 0.5:
            samples.append(StackSample(churn, rng.randint(1, 100_000), 2))
        out.append(Snapshot(t=float(i), stacks=tuple(samples)))
    return out


@pytest.mark.parametrize("n", [50, 200])
def test_runs_up_to_the_statistics_bound_equal_the_reference(n: int) -> None:
    findings = compare(shaped_run(n))
    assert findings[0].stack.top == "leak" and findings[0].verdict == "leak"


def test_a_long_run_is_judged_on_a_bounded_window_with_the_same_verdicts() -> None:
    snaps = shaped_run(1500)
    new = stacks.analyze_snapshots(snaps)
    # the reference on the same evenly spaced subset the window keeps (its own cost is quadratic)
    window = stacks.window_of(snaps)
    kept = window.snapshots()
    assert stacks.WINDOW_SNAPSHOTS // 2 <= len(kept) <= stacks.WINDOW_SNAPSHOTS + 1
    assert kept[0].t == 0.0 and kept[-1].t == 1499.0
    old = {f.stack: f for f in ref.analyze_snapshots(kept)}
    assert {f.stack: f.verdict for f in new} == {s: f.verdict for s, f in old.items()}
    for f in new:
        assert f.growth_bytes_per_sec == pytest.approx(old[f.stack].growth_bytes_per_sec, rel=0.01, abs=1.0)
    leak = new[0]
    assert leak.stack.top == "leak" and leak.verdict == "leak"
    assert leak.growth_bytes_per_sec == pytest.approx(4096, rel=0.01)


def test_window_is_bounded_and_evenly_spaced() -> None:
    window = stacks.SnapshotWindow(capacity=16)
    s = stack("x")
    for i in range(1000):
        window.add(Snapshot(t=float(i), stacks=(StackSample(s, i, 1),)))
        assert len(window) <= 17
    times = [snap.t for snap in window.snapshots()]
    assert times[0] == 0.0 and times[-1] == 999.0
    steps = {b - a for a, b in itertools.pairwise(times[:-1])}
    assert steps == {float(window.stride)}
    ts, ys, counts = window.columns(s)
    assert ts.tolist() == times and ys.tolist() == [int(t) for t in times] and set(counts.tolist()) == {1}


def test_growing_judges_only_the_stacks_that_grew() -> None:
    window = stacks.window_of(shaped_run(100))
    top = window.growing(top=2, candidates=2)
    assert [f.stack.top for f in top][:1] == ["leak"]
    assert top[0].verdict == "leak"
    assert len(top) == 2


def test_stack_identity_survives_the_window() -> None:
    a = Stack(stack("y").frames)
    window = stacks.window_of([Snapshot(t=0.0, stacks=(StackSample(a, 5, 1),))])
    (finding,) = window.findings()
    assert finding.stack == stack("y")


def _run_freed_at_exit(mark: bool) -> stacks.SnapshotWindow:
    """A stack growing 100 KiB a second for 8 s, a plateau, then a snapshot after the program
    exited, whose clean-up freed both (an interpreter's teardown, C++ destructors)."""
    window = stacks.SnapshotWindow()
    leak, cache = stack("leak"), stack("cache")
    for i in range(8):
        window.add(
            Snapshot(
                t=float(i), stacks=(StackSample(leak, i * 102_400, i * 25), StackSample(cache, 65_536, 16))
            )
        )
    if mark:
        window.mark_exited()
    window.add(Snapshot(t=8.2, stacks=(StackSample(leak, 4096, 1),)))
    return window


def test_a_leak_freed_only_at_exit_is_judged_on_the_snapshots_before_the_exit() -> None:
    by_top = {f.stack.top: f for f in _run_freed_at_exit(mark=True).findings()}
    leak = by_top["leak"]
    assert leak.verdict == "leak", leak.reason
    assert leak.outstanding_bytes == 7 * 102_400 and leak.count == 175
    assert leak.growth_bytes_per_sec == pytest.approx(102_400, rel=0.01)
    assert (
        "freed only when the program exited" in leak.reason and "8 snapshots before the exit" in leak.reason
    )
    assert by_top["cache"].verdict != "leak"  # freed at exit too, but it never grew
    # without the exit mark (the target still running), the same fall is what it looks like
    assert {f.stack.top: f for f in _run_freed_at_exit(mark=False).findings()}["leak"].verdict != "leak"


def test_growth_freed_at_exit_seen_in_two_snapshots_is_shown_with_what_it_held() -> None:
    """A 12 s program at the default 5 s interval: two snapshots while it ran, one after its exit."""
    window = stacks.SnapshotWindow()
    grown = stack("grown")
    window.add(Snapshot(t=5.0, stacks=(StackSample(grown, 8_000_000, 2000),)))
    window.add(Snapshot(t=10.0, stacks=(StackSample(grown, 17_000_000, 4250),)))
    window.mark_exited()
    window.add(Snapshot(t=12.2, stacks=()))
    (f,) = window.findings()
    # growth in one step: a leak or a cache that filled, two snapshots cannot tell (never "a cache")
    assert f.verdict == "unknown" and f.outstanding_bytes == 17_000_000 and f.count == 4250, f.reason
    assert f.reason.startswith("unknown: too few snapshots: grew 8.6 MiB between its only two snapshots")
    assert "freed only when the program exited" in f.reason


@pytest.mark.parametrize("n", [1, 2, 3, 5, 250, 700])
@pytest.mark.parametrize("value", [0, 4096, 10**12])
def test_constant_series_skip_the_pairwise_work_with_the_same_figures(n: int, value: int) -> None:
    """A stack that holds the same bytes at every snapshot (allocated once, then kept) gets its
    figures without the pairwise slopes: the same as the reference's, at any length."""
    times = [float(i) + (0.5 if i % 7 == 3 else 0.0) for i in range(n)]
    times[n // 2 :] = [t + 1 for t in times[n // 2 :]]  # an uneven gap
    points = [SeriesPoint(t, value, 1) for t in times]
    new, old = stacks.series_stats(points), ref.series_stats(points)
    for name in stacks.SeriesStats.__dataclass_fields__:
        assert getattr(new, name) == pytest.approx(getattr(old, name), abs=1e-12), name
