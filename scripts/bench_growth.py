#!/usr/bin/env python3
"""What growth mode costs the target, next to the allocation probes, on two workloads.

    sudo .venv/bin/python scripts/bench_growth.py [--seconds 6] [--jq-mb 40] [--runs 3]
        [--alloc-backends native,bcc]

1. The malloc-bound loop tests/targets/bench_alloc.c (malloc(64)/free pairs; it prints its own ns
   per pair every second): natively, under `leakhunt run --mode growth`, and under the allocation
   probes (`leakhunt run --backend B`). Figure: median ns per pair over the probed seconds.
2. A real program, jq, parsing a generated JSON file of --jq-mb MiB (`jq . FILE`: it builds the
   whole document, so it keeps faulting new pages). jq opens a FIFO and blocks until the input
   comes, so the probe attaches to it first (`leakhunt investigate PID`), then the file is written
   into the FIFO; the figure is the wall time from the first byte written to jq's exit, median of
   --runs runs.

Goal (issue 15): growth mode under 5% slowdown on both. Anchor: the allocation probes' cost per
malloc/free pair measured by scripts/bench_probe_cost.py (bcc memleak ~15.8 us per pair on the
reference VM), and the native run of each workload.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import compile_target  # noqa: E402

LEAKHUNT = [sys.executable, "-m", "leakhunt"]
_FIGURE = re.compile(r"ns_per_pair=([\d.]+)")


def loop_native(binary: Path, seconds: float) -> list[float]:
    out = subprocess.run([str(binary), str(seconds)], capture_output=True, text=True, check=True).stdout
    return [float(v) for v in _FIGURE.findall(out)]


def loop_under(binary: Path, seconds: float, args: list[str]) -> list[float]:
    """ns per pair of bench_alloc run by `leakhunt run ARGS -- bench_alloc SECONDS` (attached first)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [*LEAKHUNT, "run", *args, "--duration", str(seconds + 30), "--interval", "2",
             "--format", "json", "--output-dir", tmp, "--", str(binary), str(seconds)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    values = [float(v) for v in _FIGURE.findall(done.stdout)]
    if not values:
        raise RuntimeError(f"leakhunt run {' '.join(args)} printed no figure: {done.stderr[-800:]}")
    return values


def make_json(path: Path, mib: int) -> None:
    """A JSON array of small objects, about ``mib`` MiB."""
    record = {
        "id": 0,
        "name": "item",
        "tags": ["a", "b", "c"],
        "price": 12.5,
        "nested": {"x": 1, "y": [1, 2]},
    }
    one = len(json.dumps(record)) + 1
    count = mib * (1 << 20) // one
    with path.open("w") as fh:
        fh.write("[")
        for i in range(count):
            record["id"] = i
            fh.write(("," if i else "") + json.dumps(record))
        fh.write("]\n")


def jq_once(data: Path, probe_args: list[str] | None, seen: list[str]) -> float:
    """Seconds jq takes to parse ``data`` fed through a FIFO, under ``probe_args`` (None: no probe).

    What the probe measured meanwhile (its rank-1 stack) is appended to ``seen``: proof that it was
    attached and counting, not idle."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "in.json"
        os.mkfifo(fifo)
        jq = subprocess.Popen(["jq", ".", str(fifo)], stdout=subprocess.DEVNULL)
        probe = None
        try:
            if probe_args is not None:
                probe = subprocess.Popen(
                    [*LEAKHUNT, "investigate", str(jq.pid), *probe_args, "--duration", "300",
                     "--interval", "2", "--format", "json", "--output-dir", tmp],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                assert probe.stderr is not None
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    line = probe.stderr.readline()
                    if not line:
                        raise RuntimeError(f"leakhunt {' '.join(probe_args)} ended before attaching")
                    if "probes attached" in line:
                        break
            start = time.monotonic()
            with fifo.open("wb") as out, data.open("rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            jq.wait()
            return time.monotonic() - start
        finally:
            if jq.poll() is None:
                jq.kill()
                jq.wait()
            if probe is not None:
                if probe.poll() is None:
                    probe.send_signal(signal.SIGINT)
                try:
                    probe.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    probe.kill()
                    probe.wait()
                seen.append(_rank1(Path(tmp)))


def _rank1(folder: Path) -> str:
    for path in folder.glob("leakhunt-investigation-*.json"):
        doc = json.loads(path.read_text())
        if doc["findings"]:
            f = doc["findings"][0]
            return f"{f['verdict']} {f['outstanding_bytes'] / (1 << 20):.1f} MiB via {f['frames'][0][:60]}"
        return "no finding"
    return "no report"


def row(name: str, values: list[float], base: float, unit: str) -> str:
    if not values:
        return f"{name:40} {'no data':>12}"
    med = statistics.median(values)
    spread = f"{min(values):.3f}-{max(values):.3f}"
    return (
        f"{name:40} {med:12.3f} {unit:6} {100 * (med / base - 1):+9.1f} %   n={len(values)}  range {spread}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of the malloc loop per setup")
    parser.add_argument("--jq-mb", type=int, default=40, help="size of jq's input in MiB")
    parser.add_argument("--runs", type=int, default=3, help="jq runs per setup")
    parser.add_argument(
        "--alloc-backends",
        default="native,bcc",
        help="allocation-probe backends to compare (comma-separated)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the probes need it)")
    backends = [b for b in args.alloc_backends.split(",") if b]
    binary = compile_target("bench_alloc")

    print(f"1. malloc-bound loop (bench_alloc, {args.seconds:g} s per setup): ns per malloc/free pair")
    loop = [("native (no probe)", loop_native(binary, args.seconds))]
    loop.append(("leakhunt --mode growth", loop_under(binary, args.seconds, ["--mode", "growth"])))
    for b in backends:
        loop.append(
            (f"leakhunt --mode alloc --backend {b}", loop_under(binary, args.seconds, ["--backend", b]))
        )
    base = statistics.median(loop[0][1])
    print(f"{'setup':40} {'median':>12} {'':6} {'vs native':>10}")
    for name, values in loop:
        print(row(name, values, base, "ns"))

    print(f"\n2. jq . on {args.jq_mb} MiB of JSON through a FIFO ({args.runs} runs per setup): seconds")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "input.json"
        make_json(data, args.jq_mb)
        setups: list[tuple[str, list[str] | None]] = [
            ("native (no probe)", None),
            ("leakhunt --mode growth", ["--mode", "growth"]),
        ]
        setups += [(f"leakhunt --mode alloc --backend {b}", ["--backend", b]) for b in backends]
        times: dict[str, list[float]] = {name: [] for name, _ in setups}
        seen: dict[str, list[str]] = {name: [] for name, _ in setups}
        for _ in range(args.runs):
            for name, probe_args in setups:  # interleaved: a busy moment of the host hits every setup
                times[name].append(jq_once(data, probe_args, seen[name]))
    base = statistics.median(times["native (no probe)"])
    print(f"{'setup':40} {'median':>12} {'':6} {'vs native':>10}")
    for name, _ in setups:
        print(row(name, times[name], base, "s"))
    for name, _ in setups[1:]:
        print(f"  {name}: rank 1 of its last run: {seen[name][-1] if seen[name] else '-'}")
    print(
        "\ngoal: growth mode < 5% slower than native on both; anchor: scripts/bench_probe_cost.py "
        "(allocation probes ~15.8 us per malloc/free pair with bcc memleak on the reference VM)"
    )


if __name__ == "__main__":
    main()
