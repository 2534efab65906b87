"""How long rendering takes, and how big the reports get, for a long run with many stacks.

    .venv/bin/python scripts/bench_report.py [--stacks 300] [--snapshots 720]

A synthetic investigation (an hour at 5 s intervals by default, every stack in every snapshot:
more than memleak's top-N output ever holds) is rendered in every format; the figures print beside
the anchor of the real fixture tests/fixtures/reports/investigation-bpftrace.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from leakhunt.model import (
    Finding,
    Frame,
    Investigation,
    MemSample,
    RunInfo,
    SeriesPoint,
    Snapshot,
    Stack,
    StackSample,
)
from leakhunt.report import FORMATS, jsonio, render_bytes

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n_stacks: int, n_snaps: int, interval: float = 5.0) -> Investigation:
    base = jsonio.load(ROOT / "tests" / "fixtures" / "reports" / "investigation-bpftrace.json")
    assert isinstance(base, Investigation)
    stacks = [
        Stack(tuple(Frame(f"fn_{i}_{d}", 16 * d, "app", 0x400000 + i * 64 + d) for d in range(12)))
        for i in range(n_stacks)
    ]
    snaps = tuple(
        Snapshot(
            t=k * interval,
            stacks=tuple(StackSample(s, 4096 + (k * i) % 65536, 1 + k % 7) for i, s in enumerate(stacks)),
        )
        for k in range(n_snaps)
    )
    findings = tuple(
        Finding(
            rank=i + 1,
            stack=s,
            verdict="leak" if i < 10 else "stable",
            outstanding_bytes=4096 + i,
            count=1,
            growth_bytes_per_sec=float(n_stacks - i),
            confidence=0.9,
            first_seen=0.0,
            last_seen=(n_snaps - 1) * interval,
            series=tuple(SeriesPoint(k * interval, 4096 + (k * i) % 65536, 1) for k in range(n_snaps)),
        )
        for i, s in enumerate(stacks)
    )
    memory = tuple(
        MemSample(k * 1.0, 10_000_000 + k * 1000, 50_000_000, 2_000_000) for k in range(n_snaps * 5)
    )
    return Investigation(
        target=base.target,
        backend=base.backend,
        run=RunInfo(started_at=base.run.started_at, duration_s=n_snaps * interval),
        interval_s=interval,
        snapshots=snaps,
        findings=findings,
        memory=memory,
    )


def measure(label: str, doc: Investigation) -> None:
    for fmt in FORMATS:
        t0 = time.perf_counter()
        data = render_bytes(doc, fmt)
        took = time.perf_counter() - t0
        print(f"{label:<38} {fmt:<7} {took * 1000:9.1f} ms {len(data) / 1e6:9.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", type=int, default=300)
    ap.add_argument("--snapshots", type=int, default=720)
    args = ap.parse_args()
    anchor = jsonio.load(ROOT / "tests" / "fixtures" / "reports" / "investigation-bpftrace.json")
    assert isinstance(anchor, Investigation)
    print(f"{'document':<38} {'format':<7} {'render':>12} {'size':>12}")
    measure("anchor: fixture (5 stacks, 6 snaps)", anchor)
    t0 = time.perf_counter()
    big = synthetic(args.stacks, args.snapshots)
    print(f"(built the synthetic document in {time.perf_counter() - t0:.1f} s)")
    measure(f"{args.stacks} stacks x {args.snapshots} snapshots", big)
    t0 = time.perf_counter()
    jsonio.loads(render_bytes(big, "json").decode())
    print(f"{'':<38} load    {(time.perf_counter() - t0) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
