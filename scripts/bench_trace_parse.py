"""Benchmark: import a generated memleak -t log, beside a plain awk script doing the same matching.

    .venv/bin/python scripts/bench_trace_parse.py [--lines N] [--keep FILE] [--no-reference] [--repeat 3]

Generates a log of BCC memleak -t tuples (4 threads of one process, "leakhunt: tid" lines naming
their process, a live set of about 20,000 blocks, 1% of allocations never freed), then runs, each
in a fresh process so that peak memory is its own:
  - leakhunt import: the command end to end (interpreter start, reading, matching, the html, md
    and json reports);
  - parse+match: what ``import`` does with the text, timed inside one process
    (``read_byte_blocks`` -> ``app.tracefeed.feed_blocks``: blocks of plain tuples as arrays);
  - line by line: the same through ``TraceParser.feed_fields`` and ``app.tracefeed.feed_line``, one
    line at a time (the reference path, and how `import` worked before the block path);
  - awk: the same alloc/free matching per process in a dozen lines of awk (the anchor);
and prints lines/s (CPU seconds of that process and wall) and peak RSS side by side, checking that
all found the same unfreed blocks. It also imports the first half of the log: peak memory follows
the outstanding allocations, not the file's length. Goal (issue 12): import >= 1,000,000 lines/s
end to end.
"""

from __future__ import annotations

import argparse
import json
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
import os, sys, time
from leakhunt.analyze.trace import TraceMatcher
from leakhunt.app.tracefeed import feed_blocks, feed_line
from leakhunt.inputfile import read_blocks, read_byte_blocks
from leakhunt.parse import ParseStats
from leakhunt.parse.trace import TraceParser
t0, c0 = time.perf_counter(), time.process_time()
m = TraceMatcher()
stats = ParseStats()
with open(sys.argv[1], "rb") as fh:
    if sys.argv[2] == "blocks":
        feed_blocks(m, read_byte_blocks(fh, sys.argv[1], os.fstat(fh.fileno()), size=2 << 20), stats)
    else:
        parser = TraceParser(stats)
        for line in read_blocks(fh, sys.argv[1], os.fstat(fh.fileno()), size=1 << 16):
            for one in line.splitlines():
                feed_line(m, parser, one)
s = m.summary()
took, cpu = time.perf_counter() - t0, time.process_time() - c0
(p,) = s.processes
print(p.unfreed_count, p.unfreed_bytes, p.alloc_count, p.free_count, p.unknown_frees, stats.lines, took, cpu)
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


# leakhunt as installed: with its bytecode caches (pip writes them; a shell that sets
# PYTHONDONTWRITEBYTECODE would make every run compile leakhunt's modules again: ~0.3-0.7 s here)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_measured(argv: list[str]) -> tuple[str, float, float, float]:
    """Run ``argv``; return its stdout, wall seconds, CPU seconds and peak RSS (MiB) of that
    program alone.

    The peak is VmHWM from /proc/PID/status, polled until the program ends: it belongs to the
    program's own address space (ru_maxrss would also count this benchmark's memory, which the
    child shares until it executes the program).
    """
    t0 = time.perf_counter()
    before = os.times()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, text=True, env=ENV)
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
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed with status {proc.returncode}")
        out.seek(0)
        return out.read().strip(), took, cpu, peak_kib / 1024


def import_command(log: Path, out_dir: Path) -> tuple[int, int, float, float, float]:
    """``leakhunt import`` of ``log``: unfreed blocks and bytes (from its JSON report), wall
    seconds, CPU seconds, peak RSS."""
    leakhunt = Path(sys.executable).with_name("leakhunt")
    argv = [str(leakhunt), "import", str(log), "--output-dir", str(out_dir)]
    _, wall, cpu, rss = run_measured(argv)
    (report,) = out_dir.glob("*.json")
    doc = json.loads(report.read_text())
    count = sum(p["unfreed_count"] for p in doc["processes"])
    nbytes = sum(p["unfreed_bytes"] for p in doc["processes"])
    return count, nbytes, wall, cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--keep", type=Path, help="keep the generated log here")
    ap.add_argument("--no-reference", action="store_true", help="skip the line-by-line run (slow)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the whole import (the fastest is shown)")
    args = ap.parse_args()
    awk = shutil.which("mawk") or shutil.which("awk") or shutil.which("gawk")
    with tempfile.TemporaryDirectory(prefix="leakhunt-bench-") as tmp:
        log = args.keep or Path(tmp) / "trace.log"
        half = Path(tmp) / "half.log"
        t0 = time.perf_counter()
        n = generate(log, args.lines)
        print(
            f"generated {n:,} lines ({log.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.2f}, "
            f"{os.cpu_count()} CPUs"
        )
        with open(log) as src, open(half, "w") as dst:
            for i, line in enumerate(src):
                if i >= n // 2:
                    break
                dst.write(line)
        # the logs' pages written to disk now: the kernel's writeback of 240 MiB just written
        # would otherwise run during the first measurements (leakhunt's: 0.3-0.5 s slower)
        os.sync()

        # (name, wall s, cpu s, peak MiB, unfreed count, unfreed bytes)
        rows: list[tuple[str, float, float, float, int, int]] = []
        # the half log first: it also writes the bytecode caches, as an installed leakhunt has them
        half_count, _, _, _, half_rss = import_command(half, Path(tmp) / "half-out")
        runs = [import_command(log, Path(tmp) / f"out{i}") for i in range(args.repeat)]
        count, nbytes, wall, cpu, rss = min(runs, key=lambda r: r[2])
        walls = ", ".join(f"{r[2]:.2f}" for r in runs)
        rows.append((f"leakhunt import{'*' if args.repeat > 1 else ''}", wall, cpu, rss, count, nbytes))
        py = [sys.executable, "-c", OURS]
        for name, how in (("parse+match", "blocks"), ("line by line", "lines")):
            if how == "lines" and args.no_reference:
                continue
            out, _wall, _cpu, rss = run_measured([*py, str(log), how])
            c, b, _a, _f, _u, _lines, took, used = out.split()
            rows.append((f"  {name}", float(took), float(used), rss, int(c), int(b)))
        _, idle_wall, idle_cpu, idle_rss = run_measured(
            [str(Path(sys.executable).with_name("leakhunt")), "import", "--help"]
        )
        if awk:
            awk_out, awk_wall, awk_cpu, awk_rss = run_measured([awk, AWK, str(log)])
            a_count, a_bytes, *_ = awk_out.split()
            rows.append(
                (f"awk ({os.path.basename(awk)})", awk_wall, awk_cpu, awk_rss, int(a_count), int(a_bytes))
            )
        print(f"\n{'':18} {'lines/s (wall)':>15} {'lines/s (CPU)':>14} {'wall':>7} {'peak RSS':>10}   result")
        for name, w, used_cpu, mem, unfreed, ubytes in rows:
            print(
                f"{name:18} {n / w:15,.0f} {n / used_cpu:14,.0f} {w:6.2f}s {mem:6.1f} MiB   "
                f"{unfreed:,} unfreed, {ubytes:,} B"
            )
        print(
            f"\n`leakhunt import --help` alone (interpreter start and the imports of `import`): "
            f"{idle_wall:.2f} s wall, "
            f"{idle_cpu:.2f} s CPU, {idle_rss:.1f} MiB"
        )
        print(
            f"peak memory of import: first half of the log ({n // 2:,} lines, {half_count:,} unfreed) "
            f"{half_rss:.1f} MiB; whole log ({n:,} lines, {count:,} unfreed) {rows[0][3]:.1f} MiB"
        )
        if args.repeat > 1:
            print(f"* the fastest of {args.repeat} runs (wall: {walls} s)")
        print("goal: import >= 1,000,000 lines/s end to end; memory follows the outstanding blocks")
        results = {(r[4], r[5]) for r in rows}
        if len(results) != 1:
            raise SystemExit(f"MISMATCH between the runs: {rows}")


if __name__ == "__main__":
    main()
