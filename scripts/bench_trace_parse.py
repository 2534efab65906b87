"""Benchmark: parse and match a generated memleak -t log, beside a plain awk script doing the same.

    .venv/bin/python scripts/bench_trace_parse.py [--lines 2000000] [--keep FILE]

Generates a log of BCC memleak -t tuples (4 threads of one process, "leakhunt: tid" lines naming
their process, a live set of about 20,000 blocks, 1% of allocations never freed), then runs, each
in a fresh process so that peak memory is its own:
  - leakhunt: ``TraceMatcher.feed_lines`` over the file (streamed);
  - awk: the same alloc/free matching per process in a dozen lines of awk (the anchor);
and prints lines/s and peak RSS side by side, checking that both found the same unfreed blocks.
It also runs leakhunt on the first half of the log: peak memory follows the outstanding
allocations, not the file's length. Goal: >= 500k lines/s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AWK = r"""
/^leakhunt: tid / { owner[$3] = $5; next }
/alloc exited/ {
    n = split($0, f, ", "); tid = f[2]; p = (tid in owner) ? owner[tid] : tid
    s = f[7]; sub(/^size = /, "", s); a = f[8]; sub(/^result = /, "", a); sub(/'\)$/, "", a)
    live[p SUBSEP a] = s; allocs++; next
}
/free entered/ {
    n = split($0, f, ", "); tid = f[2]; p = (tid in owner) ? owner[tid] : tid
    a = f[7]; sub(/^address = /, "", a); k = p SUBSEP a
    if (k in live) { delete live[k]; frees++ } else unknown++
    next
}
END { c = 0; b = 0; for (k in live) { c++; b += live[k] } print c, b, allocs, frees, unknown + 0 }
"""

OURS = r"""
import resource, sys, time
from leakhunt.analyze.trace import TraceMatcher
from leakhunt.parse import ParseStats
t0 = time.perf_counter()
m = TraceMatcher()
stats = ParseStats()
with open(sys.argv[1], encoding="utf-8", errors="replace") as fh:
    m.feed_lines(fh, stats)
s = m.summary()
took = time.perf_counter() - t0
(p,) = s.processes
print(p.unfreed_count, p.unfreed_bytes, p.alloc_count, p.free_count, p.unknown_frees, stats.lines, took)
"""


def generate(path: Path, n_lines: int, seed: int = 1) -> int:
    """Write a memleak -t log of about ``n_lines`` lines; returns the line count."""
    rng = random.Random(seed)
    pid = 4242
    tids = [pid, pid + 1, pid + 2, pid + 3]
    live: list[int] = []
    next_addr = 0x55D0C0A00000
    t = 1000.0
    lines = 0
    with open(path, "w") as fh:
        fh.write("Attaching to pid 4242, Ctrl+C to quit.\n")
        lines += 1
        for tid in tids:
            fh.write(f"leakhunt: tid {tid} pid {pid}\n")
            lines += 1
        out: list[str] = []
        while lines < n_lines:
            tid = rng.choice(tids)
            t += 0.000003
            if len(live) < 20_000 or rng.random() < 0.5:
                size = rng.choice((16, 24, 32, 64, 128, 1024, 4000))
                next_addr += 0x40
                address = next_addr
                out.append(f"(b'app', {tid}, 1, b'...11', {t:.6f}, b'alloc entered, size = {size}')\n")
                out.append(
                    f"(b'app', {tid}, 1, b'...11', {t:.6f}, "
                    f"b'alloc exited, size = {size}, result = {address:x}')\n"
                )
                lines += 2
                if rng.random() >= 0.01:  # 1% leak: never put in the live set, never freed
                    live.append(address)
            else:
                i = rng.randrange(len(live))
                live[i], live[-1] = live[-1], live[i]
                address = live.pop()
                out.append(
                    f"(b'app', {tid}, 1, b'...11', {t:.6f}, "
                    f"b'free entered, address = {address:x}, size = 0')\n"
                )
                lines += 1
            if len(out) >= 10_000:
                fh.writelines(out)
                out.clear()
        fh.writelines(out)
    return lines


def run_measured(argv: list[str]) -> tuple[str, float, float]:
    """Run ``argv``; return its stdout, wall seconds and peak RSS (MiB) of that program alone.

    The peak is VmHWM from /proc/PID/status, polled until the program ends: it belongs to the
    program's own address space (ru_maxrss would also count this benchmark's memory, which the
    child shares until it executes the program).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, text=True)
        peak_kib = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed with status {proc.returncode}")
        out.seek(0)
        return out.read().strip(), took, peak_kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--keep", type=Path, help="keep the generated log here")
    args = ap.parse_args()
    awk = shutil.which("mawk") or shutil.which("awk") or shutil.which("gawk")
    with tempfile.TemporaryDirectory(prefix="leakhunt-bench-") as tmp:
        log = args.keep or Path(tmp) / "trace.log"
        half = Path(tmp) / "half.log"
        t0 = time.perf_counter()
        n = generate(log, args.lines)
        print(
            f"generated {n:,} lines ({log.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        with open(log) as src, open(half, "w") as dst:
            for i, line in enumerate(src):
                if i >= n // 2:
                    break
                dst.write(line)

        py = [sys.executable, "-c", OURS]
        ours, wall, rss = run_measured([*py, str(log)])
        count, nbytes, allocs, frees, unknown, _lines, parse_s = ours.split()
        _, _, idle_rss = run_measured([sys.executable, "-c", "import leakhunt.analyze.trace"])
        half_out, _, half_rss = run_measured([*py, str(half)])
        rows = [
            ("leakhunt", n / float(parse_s), rss, f"{int(count):,} unfreed, {int(nbytes):,} B"),
        ]
        awk_out = ""
        if awk:
            awk_out, awk_wall, awk_rss = run_measured([awk, AWK, str(log)])
            a_count, a_bytes, *_ = awk_out.split()
            rows.append(
                (
                    f"awk ({os.path.basename(awk)})",
                    n / awk_wall,
                    awk_rss,
                    f"{int(a_count):,} unfreed, {int(a_bytes):,} B",
                )
            )
        print(f"\n{'':16} {'lines/s':>12} {'peak RSS':>10}   result")
        for name, rate, mem, result in rows:
            print(f"{name:16} {rate:12,.0f} {mem:8.1f} MiB   {result}")
        print(
            f"\nleakhunt: {int(allocs):,} allocations, {int(frees):,} frees, {int(unknown):,} unknown frees; "
            f"parse+match {float(parse_s):.2f} s of {wall:.2f} s wall (interpreter start included)"
        )
        print(f"peak memory: interpreter + leakhunt imports alone {idle_rss:.1f} MiB;")
        half_unfreed = half_out.split()[0]
        print(f"  first half of the log ({n // 2:,} lines, {half_unfreed} unfreed): {half_rss:.1f} MiB;")
        print(f"  whole log ({n:,} lines, {count} unfreed): {rss:.1f} MiB")
        print("goal: >= 500,000 lines/s; memory follows the outstanding blocks, not the log's length")
        if awk and awk_out.split()[:2] != [count, nbytes]:
            raise SystemExit(f"MISMATCH: awk says {awk_out!r}, leakhunt {count} {nbytes}")


if __name__ == "__main__":
    main()
