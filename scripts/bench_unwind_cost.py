#!/usr/bin/env python3
"""What the native probe's DWARF stack key costs per allocation, next to the frame-pointer walk.

    sudo .venv/bin/python scripts/bench_unwind_cost.py [--seconds 6] [--rounds 2] [--depths 0,30]

Runs tests/targets/bench_deep.c (a malloc/free loop DEPTH frames deep, printing its own ns per pair
every second) under ``leakhunt run --backend native --unwind fp`` and ``--unwind dwarf``, alternating
the two so that a busy host weighs on both alike, each under /tmp/leakhunt-probe.lock. Prints the
median ns/pair per setup (the first second, which covers the attach, is left out), and the loop
unprobed as the anchor. The difference between the two rows is the cost of the DWARF key (copy of
2 KiB of stack, scan of its words for code addresses) minus the kernel's frame-pointer walk; the
8 KiB copy and the unwinding in leakhunt happen once per new stack key, not per allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import PROBE_LOCK, compile_target  # noqa: E402

_FIGURE = re.compile(r"ns_per_pair=([\d.]+)")


@contextlib.contextmanager
def probe_lock() -> Iterator[None]:
    with open(PROBE_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def figures(text: str) -> list[float]:
    return [float(m.group(1)) for m in _FIGURE.finditer(text)]


def under_native(binary: Path, unwind: str, seconds: float, depth: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp, probe_lock():
        done = subprocess.run(
            [sys.executable, "-m", "leakhunt", "run", "--backend", "native", "--unwind", unwind,
             "--duration", str(seconds + 60), "--interval", "2", "--format", "json", "--output-dir", tmp,
             "--", str(binary), str(seconds), str(depth)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"leakhunt run --unwind {unwind} failed: {done.stderr[-800:]}")
    return figures(done.stdout)[1:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--depths", default="0,30")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the probes need it)")
    binary = compile_target("bench_deep", flags=("-O2",))
    depths = [int(d) for d in args.depths.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    for depth in depths:
        argv = [str(binary), str(args.seconds), str(depth)]
        plain = subprocess.run(argv, capture_output=True, text=True, check=True)
        results[("unprobed", depth)] = figures(plain.stdout)
    for _ in range(args.rounds):
        for depth in depths:
            for unwind in ("fp", "dwarf"):
                results.setdefault((unwind, depth), []).extend(
                    under_native(binary, unwind, args.seconds, depth)
                )
                print(f"  measured --unwind {unwind}, depth {depth}", file=sys.stderr)
    print(f"{'setup':36} {'ns/pair (median)':>17} {'min':>9}  samples")
    for depth in depths:
        for name in ("unprobed", "fp", "dwarf"):
            values = results.get((name, depth), [])
            label = f"{name if name == 'unprobed' else 'native --unwind ' + name}, depth {depth}"
            if not values:
                print(f"{label:36} {'no data':>17}")
                continue
            print(f"{label:36} {statistics.median(values):17.1f} {min(values):9.1f}  {len(values)}")
        fp, dw = results.get(("fp", depth)), results.get(("dwarf", depth))
        if fp and dw:
            extra = statistics.median(dw) - statistics.median(fp)
            print(f"{'  dwarf minus fp':36} {extra:17.1f}")
    print(
        "anchor, measured here by hand (2 rounds x 4 s each, 2 cores shared with other probe sessions, "
        "load ~3), median ns/pair: depth 0: fp 5,990, dwarf 8,980; depth 30: fp 7,100, dwarf 11,420 "
        "(unprobed ~25)"
    )


if __name__ == "__main__":
    main()
