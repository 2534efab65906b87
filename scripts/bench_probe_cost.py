#!/usr/bin/env python3
"""Cost of one malloc/free pair in a malloc-bound loop: natively, under each leakhunt backend, and
under plain BCC memleak, side by side.

    sudo .venv/bin/python scripts/bench_probe_cost.py [--seconds 6]

Anchor (docs/FORMATS measurements on the reference VM): native ~8 ns, bcc memleak ~15.8 us,
bpftrace malloc+free maps ~15.8 us; the goal is "the bpftrace backend costs no more than memleak".
The target is tests/targets/bench_alloc.c: it prints its own ns per pair every second; the figure
kept is the median of the seconds measured while the probe was attached.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leakhunt.probe import memleak as memleak_backend  # noqa: E402
from leakhunt.probe import tools  # noqa: E402
from tests.conftest import compile_target  # noqa: E402

_FIGURE = re.compile(r"ns_per_pair=([\d.]+)")


def figures(text: str) -> list[float]:
    return [float(m.group(1)) for m in _FIGURE.finditer(text)]


def native(binary: Path, seconds: float) -> list[float]:
    out = subprocess.run([str(binary), str(seconds)], capture_output=True, text=True, check=True).stdout
    return figures(out)


def under_leakhunt(
    binary: Path, backend: str, seconds: float, env: dict[str, str] | None = None
) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "leakhunt", "run", "--backend", backend, "--duration", str(seconds + 30),
             "--interval", "5", "--format", "json", "--output-dir", tmp, "--", str(binary), str(seconds)],
            capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"leakhunt run --backend {backend} failed: {done.stderr[-800:]}")
    return figures(done.stdout)


def under_memleak(binary: Path, seconds: float) -> list[float]:
    tool = tools.find_memleak()
    if tool is None:
        raise RuntimeError("memleak not installed")
    # Start the loop, attach memleak -p, keep only the seconds measured after memleak attached.
    target = subprocess.Popen([str(binary), str(seconds + 60)], stdout=subprocess.PIPE, text=True)
    probe = subprocess.Popen(
        [tool.path, "-p", str(target.pid), "5"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[tuple[float, float]] = []

    def collect() -> None:
        assert target.stdout is not None
        for line in target.stdout:
            for value in figures(line):
                lines.append((time.monotonic(), value))

    threading.Thread(target=collect, daemon=True).start()
    try:
        assert probe.stdout is not None
        while not probe.stdout.readline().startswith("Attaching"):
            pass
        deadline = time.monotonic() + 120
        while not memleak_backend.sleeping(probe.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        attached = time.monotonic()
        time.sleep(seconds + 1.5)
        # a figure printed more than a second after the attach covers a probed second only
        return [v for t, v in lines if t > attached + 1.0]
    finally:
        probe.send_signal(2)
        target.kill()
        probe.wait(timeout=20)
        target.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds measured per setup")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the probes need it)")
    binary = compile_target("bench_alloc")
    rows: list[tuple[str, list[float]]] = [("native", native(binary, args.seconds))]
    for backend in ("bpftrace", "bcc"):
        rows.append((f"leakhunt --backend {backend}", under_leakhunt(binary, backend, args.seconds)))
    bpftrace = tools.find_bpftrace()
    if bpftrace is not None and bpftrace.version_tuple >= (0, 22):
        # bpftrace 0.22+ probes free on an emulated instruction; the same run with free at its entry:
        at_entry = under_leakhunt(binary, "bpftrace", args.seconds, {"LEAKHUNT_PROBE_AT_ENTRY": "1"})
        rows.insert(2, (f"  same, free at entry ({bpftrace.version})", at_entry))
    rows.append(("plain memleak-bpfcc -p", under_memleak(binary, args.seconds)))
    base = statistics.median(rows[0][1])
    print(f"{'setup':32} {'ns/pair (median)':>17} {'x native':>10}  samples")
    for name, values in rows:
        if not values:
            print(f"{name:32} {'no data':>17}")
            continue
        med = statistics.median(values)
        print(f"{name:32} {med:17.1f} {med / base:10.0f}  {len(values)}")
    print(
        "anchor (FORMATS.md, this VM): native ~8 ns; bcc memleak ~15800 ns; "
        "bpftrace malloc+free maps ~15800 ns"
    )


if __name__ == "__main__":
    main()
