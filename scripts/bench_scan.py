#!/usr/bin/env python3
"""Benchmark of `leakhunt scan`'s sampling, beside its anchor `ps -e -o pid,rss,vsz`.

Spawns about 1,000 idle processes (``sleep``), then measures on the whole host (those plus
whatever else runs):

- one sampling sweep of leakhunt's Sweeper (one /proc file per process: statm on a host without
  swap, else status; both are measured), the first sweep (which also discovers every process:
  stat, status, cmdline) apart from the steady ones;
- one ``ps -e -o pid,rss,vsz`` over the same processes (the cost of a fork+exec of ps included,
  as a shell script polling ps would pay it);

both as CPU and wall time per 1,000 processes (median of several runs). Then it prints the memory a
1-hour scan of 1,000 processes at 1 s holds: the Sweeper's bounded series (downsampled once full)
measured with tracemalloc, the judging at the end, and what keeping every sample would cost.

Usage: .venv/bin/python scripts/bench_scan.py [--procs 1000] [--runs 15]
Goal: a steady sweep cheaper than that ps call; memory bounded whatever the scan's length.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable
from typing import Literal

from leakhunt.analyze.trend import judge_all
from leakhunt.model import MemSample, ProcessKey, Series
from leakhunt.procfs import StatusMemory
from leakhunt.sample import SeriesBuffer, Sweeper, SweepStats


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(runs: int, once: Callable[[], float | None]) -> tuple[float, float]:
    """(median CPU s, median wall s) of ``once``; ``once`` returns its own CPU time or None to use
    this process's CPU time."""
    cpus, walls = [], []
    for _ in range(runs):
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        own = once()
        walls.append(time.perf_counter() - wall0)
        cpus.append(own if own is not None else time.process_time() - cpu0)
    return statistics.median(cpus), statistics.median(walls)


def spawn_idle(n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
    return procs


def count_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, default=1000, help="idle processes to spawn (default 1000)")
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (median reported)")
    args = parser.parse_args()

    print(f"spawning {args.procs} idle processes ...", flush=True)
    procs = spawn_idle(args.procs)
    try:
        time.sleep(0.5)
        total = count_processes()
        per_k = 1000.0 / total
        print(f"processes on the host: {total}\n")

        # --- our sweeps: auto (statm on a host without swap), and status forced ----------------------
        results: dict[str, tuple[SweepStats, float, float, float]] = {}
        sources: tuple[tuple[str, Literal["status", "statm"] | None], ...] = (
            ("auto", None),
            ("status", "status"),
        )
        for label, source in sources:
            with Sweeper(exclude={os.getpid()}, source=source) as sweeper:
                first = sweeper.sweep()
                stats = [sweeper.sweep() for _ in range(args.runs)]
            results[label] = (
                first,
                statistics.median(s.cpu_s for s in stats),
                statistics.median(s.wall_s for s in stats),
                statistics.median(s.sampled for s in stats),
            )
        auto_source = Sweeper([], source=None).sweep().source

        # --- the anchor: ps -e -o pid,rss,vsz ---------------------------------------------------
        def ps_once() -> float:
            before = children_cpu()
            subprocess.run(["ps", "-e", "-o", "pid,rss,vsz"], stdout=subprocess.DEVNULL, check=True)
            return children_cpu() - before

        ps_cpu, ps_wall = measure(args.runs, ps_once)

        first, ours_cpu, ours_wall, sampled = results["auto"]
        _, status_cpu, status_wall, _ = results["status"]
        print(f"one sweep of all {total} processes ({sampled:.0f} with memory; kernel threads have none)")
        print(f"{'':40}{'CPU ms/1000 procs':>19}{'wall ms/1000 procs':>20}")

        def row(label: str, cpu: float, wall: float, extra: str = "") -> None:
            print(f"{label:40}{cpu * 1e3 * per_k:>19.2f}{wall * 1e3 * per_k:>20.2f}{extra}")

        row(f"leakhunt sweep, steady ({auto_source})", ours_cpu, ours_wall)
        if auto_source != "status":
            row("leakhunt sweep, steady (status forced)", status_cpu, status_wall, "   (hosts with swap)")
        row("leakhunt sweep, first (discovery)", first.cpu_s, first.wall_s, "   (stat+status+cmdline)")
        row("ps -e -o pid,rss,vsz (anchor)", ps_cpu, ps_wall)
        worst_cpu, worst_wall = max(ours_cpu, status_cpu), max(ours_wall, status_wall)
        verdict = "cheaper" if worst_cpu < ps_cpu and worst_wall < ps_wall else "NOT cheaper"
        print(
            f"-> a steady sweep is {verdict} than ps: {ps_cpu / max(ours_cpu, 1e-9):.1f}x less CPU, "
            f"{ps_wall / max(ours_wall, 1e-9):.1f}x less wall time "
            f"(status: {ps_cpu / max(status_cpu, 1e-9):.1f}x, {ps_wall / max(status_wall, 1e-9):.1f}x)\n"
        )
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()

    # --- memory of a 1-hour scan of 1,000 processes at 1 s ------------------------------------------
    n_procs, n_samples = 1000, 3600
    buffers = [SeriesBuffer() for _ in range(n_procs)]
    for t in range(n_samples):
        for i, buf in enumerate(buffers):
            buf.add(float(t), StatusMemory(500 << 20, (50 << 20) + (i * t) % 4096, 8 << 20, 0))
    # What the sampler holds: the buffers and their array columns (no Python object per sample).
    held = sum(
        sys.getsizeof(b) + b.nbytes() + 5 * sys.getsizeof(array("d")) + sys.getsizeof(b.latest())
        for b in buffers
    )
    columns = sum(b.nbytes() for b in buffers)
    kept = len(buffers[0])
    gc.collect()
    tracemalloc.start()
    series = [
        Series(ProcessKey(i, 1.0), "p", ("p",), None, buf.samples(), True) for i, buf in enumerate(buffers)
    ]
    del buffers
    trends = judge_all(series)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    judge_all(series)
    judge_s = time.perf_counter() - start
    del trends, series

    # What keeping every sample as a MemSample would hold, measured on a slice and scaled.
    gc.collect()
    tracemalloc.start()
    kept_all = [
        MemSample(t=float(t), rss=(50 << 20) + t, vms=500 << 20, shared=8 << 20, swap=0)
        for t in range(36_000)
    ]
    per_sample = tracemalloc.get_traced_memory()[0] / len(kept_all)
    tracemalloc.stop()
    del kept_all
    unbounded = per_sample * n_procs * n_samples

    mib = 1 << 20
    print(f"1-hour scan of {n_procs} processes at 1 s ({n_samples} sweeps):")
    print(f"  samples kept per process: {kept} of {n_samples} (oldest halved whenever the buffer fills)")
    print(f"  sampler memory while scanning: {held / mib:.1f} MiB (sample columns {columns / mib:.1f} MiB)")
    print(
        f"  at the end, samples as objects + judging: {peak / mib:.1f} MiB peak; judging took {judge_s:.2f} s"
    )
    print(f"  keeping every sample instead: {unbounded / mib:,.0f} MiB ({per_sample:.0f} B a sample)")
    print("  bound: the same for a 1-day scan (capacity per process is fixed)")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    sys.exit(0)
