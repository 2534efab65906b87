"""scan's view of the kernel's own memory: /proc/meminfo and /proc/slabinfo parsed, judged, saved."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from leakhunt.analyze.trend import judge_kernel
from leakhunt.model import MemSample, RunInfo, ScanResult
from leakhunt.procfs import parse_meminfo_slab, parse_slabinfo
from leakhunt.report import jsonio
from leakhunt.report.scan import kernel_view

PROC = Path(__file__).resolve().parent.parent / "fixtures" / "proc"


def test_meminfo_gives_unreclaimable_and_total_slab() -> None:
    text = (PROC / "meminfo.txt").read_text()
    assert parse_meminfo_slab(text) == (29280 * 1024, 153532 * 1024)
    assert parse_meminfo_slab("MemTotal: 1 kB\n") is None


def test_slabinfo_gives_bytes_in_use_per_cache() -> None:
    caches = parse_slabinfo((PROC / "slabinfo.txt").read_text())
    assert caches["filp"] == 1886 * 192  # active objects x object size
    assert "slabinfo" not in caches and "#" not in caches
    assert len(caches) >= 30


@given(st.text(max_size=2000))
def test_the_parsers_never_raise(text: str) -> None:
    parse_meminfo_slab(text)
    parse_slabinfo(text)


def _series(per_s: float, n: int = 10, base: int = 40 << 20) -> list[MemSample]:
    return [MemSample(t=float(i), rss=base + int(per_s * i), vms=4 * base, shared=0) for i in range(n)]


def test_a_growing_unreclaimable_slab_is_a_suspect_and_names_the_cache_that_grows() -> None:
    caches = {
        "filp": [(float(i), 100_000 + 150_000 * i) for i in range(10)],
        "dentry": [(float(i), 5_000_000 + (2_000_000 if i else 0)) for i in range(10)],  # filled once
        "kmalloc-64": [(float(i), 80_000 - 10 * i) for i in range(10)],  # shrinks: not listed
    }
    k = judge_kernel(_series(200_000), caches, min_growth_bytes=1 << 20)
    assert k is not None and k.verdict == "leak-suspect"
    assert [c.name for c in k.caches] == ["filp"]  # dentry's slope is 0: it stopped
    assert k.caches[0].slope_bytes_per_sec == 150_000
    view = kernel_view(
        ScanResult(
            run=RunInfo(started_at="", duration_s=9),
            interval_s=1,
            processes=(),
            sampled=0,
            unreadable=0,
            kernel_memory=k,
        )
    )
    assert view is not None and view.suspect and view.caches[0][0] == "filp"


def test_a_flat_slab_is_stable_and_no_samples_is_nothing() -> None:
    k = judge_kernel(_series(0), {}, note="/proc/slabinfo: Permission denied")
    assert k is not None and k.verdict == "stable" and k.caches == () and "Permission" in k.note
    assert judge_kernel([], {}) is None


def test_kernel_memory_round_trips_through_json() -> None:
    k = judge_kernel(_series(200_000), {"filp": [(0.0, 1000), (1.0, 5000), (2.0, 9000)]})
    scan = ScanResult(
        run=RunInfo(started_at="2026-12-01T12:00:00+00:00", duration_s=9.0),
        interval_s=1.0,
        processes=(),
        sampled=3,
        unreadable=0,
        kernel_memory=k,
    )
    assert jsonio.loads(jsonio.dumps(scan)) == scan
    assert jsonio.to_dict(scan)["kernel_memory"]["signal"] == "SUnreclaim"  # type: ignore[index]
