"""How long the folded and pprof exports take, and how big they get, beside the JSON report of the
same investigation as the anchor (every run writes JSON anyway).

    .venv/bin/python scripts/bench_exports.py [STACKS ...]   (default: 100 1000 10000)

Stacks are 24 frames deep, sharing their outer 16 frames in groups of 50 (as call trees do).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable

from leakhunt.model import BackendInfo, Finding, Frame, Investigation, RunInfo, SeriesPoint, Stack, Target
from leakhunt.report import jsonio
from leakhunt.report.folded import render_folded
from leakhunt.report.pprof import render_pprof


def investigation(n: int) -> Investigation:
    """``n`` findings with 24-frame stacks and a 10-point series each."""
    findings = []
    for i in range(n):
        inner = tuple(Frame(f"leaf_{i}_{d}", d, "app", 0x5555_0000_0000 + i * 64 + d) for d in range(8))
        outer = tuple(Frame(f"caller_{i // 50}_{d}", d, "libfoo.so", 0x7F00_0000_0000 + d) for d in range(16))
        series = tuple(SeriesPoint(float(t), 1024 * t * (i % 7 + 1), t) for t in range(10))
        findings.append(
            Finding(
                rank=i + 1,
                stack=Stack(inner + outer),
                verdict="leak" if i % 3 == 0 else "stable",
                outstanding_bytes=series[-1].outstanding_bytes,
                count=9,
                growth_bytes_per_sec=1024.0 * (i % 7 + 1),
                confidence=0.9,
                first_seen=0.0,
                last_seen=9.0,
                series=series,
            )
        )
    return Investigation(
        target=Target(pid=1, comm="bench", cmdline=("bench",)),
        backend=BackendInfo(name="bcc", tool="memleak-bpfcc", version="0.26.0", argv=()),
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=10.0),
        interval_s=1.0,
        snapshots=(),
        findings=tuple(findings),
    )


def timed(write: Callable[[], int]) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        size = write()
        best = min(best, time.perf_counter() - start)
    return best, size


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [100, 1000, 10000]
    print(f"{'stacks':>7} {'format':>7} {'seconds':>9} {'bytes':>11}   (best of 3)")
    for n in sizes:
        inv = investigation(n)

        def as_json(inv: Investigation = inv) -> int:
            buf = io.StringIO()
            jsonio.dump(inv, buf)
            return len(buf.getvalue().encode())

        def as_folded(inv: Investigation = inv) -> int:
            buf = io.StringIO()
            render_folded(inv, buf)
            return len(buf.getvalue().encode())

        def as_pprof(inv: Investigation = inv) -> int:
            buf = io.BytesIO()
            render_pprof(inv, buf)
            return len(buf.getvalue())

        for name, func in (("json", as_json), ("folded", as_folded), ("pprof", as_pprof)):
            seconds, size = timed(func)
            anchor = "  <- anchor" if name == "json" else ""
            print(f"{n:>7} {name:>7} {seconds:>9.4f} {size:>11,}{anchor}")


if __name__ == "__main__":
    main(sys.argv[1:])
