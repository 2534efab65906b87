"""Regenerate the report fixtures in tests/fixtures/reports/ from real runs on this machine.

    sudo .venv/bin/python scripts/capture_report_fixtures.py [--via leakhunt|memleak]

Both ways run the real probes on tests/targets/report_leaker.c (one leak, a cache that plateaus,
churn). ``--via leakhunt`` (default) runs ``leakhunt run`` for each backend and keeps its JSON
report as is. ``--via memleak`` is the way the first fixtures were made, before ``leakhunt run``
existed: it runs BCC's memleak on the live target, samples the target's memory with
leakhunt.sample, and builds the Investigation with leakhunt's own parser and stack analysis.
Every fixture's origin (the exact command) is written to tests/fixtures/reports/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from leakhunt import __version__
from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import BackendInfo, Investigation, MemSample, RunInfo, Target
from leakhunt.parse import ParseStats
from leakhunt.parse.memleak import parse_memleak
from leakhunt.probe.tools import find_memleak
from leakhunt.report import jsonio
from leakhunt.sample import describe, read_mem

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reports"
TARGET_SRC = ROOT / "tests" / "targets" / "report_leaker.c"
TARGET_BIN = ROOT / "tests" / "targets" / "bin" / "report_leaker"


def build_target() -> Path:
    TARGET_BIN.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(TARGET_BIN), str(TARGET_SRC)], check=True
    )
    return TARGET_BIN


def via_memleak(duration: float, interval: int) -> tuple[Investigation, str, str]:
    """memleak -p on a live report_leaker; the Investigation is built with leakhunt's parser/analysis."""
    tool = find_memleak()
    if tool is None:
        raise SystemExit("memleak not found (scripts/setup.sh)")
    target = build_target()
    # memleak compiles its BPF program before attaching (seconds, more on a busy host): the target
    # fills its cache on SIGUSR1, sent once the first block shows that memleak is attached.
    env = dict(os.environ, LEAKHUNT_CACHE_AT="100000")
    proc = subprocess.Popen([str(target), "600"], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready PID"
    info = describe(proc.pid)
    argv = [tool.path, "-p", str(proc.pid), "-T", "10", str(interval)]
    with tempfile.NamedTemporaryFile("w+", suffix=".txt") as out:
        probe = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
        deadline = time.monotonic() + 120
        while "Top 10 stacks" not in Path(out.name).read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"memleak attached after {120 - (deadline - time.monotonic()):.1f} s", file=sys.stderr)
        started = datetime.now(UTC)
        t0 = time.monotonic()
        memory: list[MemSample] = []
        warmed = False
        while time.monotonic() - t0 < duration:
            if not warmed and time.monotonic() - t0 > duration * 0.2:
                proc.send_signal(signal.SIGUSR1)
                warmed = True
            m = read_mem(proc.pid, time.monotonic() - t0)
            if m is not None:
                memory.append(m)
            time.sleep(0.5)
        probe.send_signal(signal.SIGINT)
        probe.wait(timeout=30)
        took = time.monotonic() - t0
        proc.terminate()
        proc.wait()
        text = Path(out.name).read_text()
    stats = ParseStats()
    snapshots = tuple(parse_memleak(text.splitlines(), stats))
    findings = analyze_snapshots(snapshots)
    inv = Investigation(
        target=Target(
            pid=proc.pid,
            comm=info.comm if info else target.name,
            cmdline=info.cmdline if info else (str(target), "600"),
            exe=info.exe if info else str(target),
        ),
        backend=BackendInfo(
            name="bcc",
            tool=tool.path,
            version=tool.version,
            argv=tuple(argv),
            reason="fixture capture: scripts/capture_report_fixtures.py --via memleak",
        ),
        run=RunInfo(
            started_at=started.isoformat(timespec="seconds"),
            duration_s=round(took, 3),
            stop_reason="duration",
            kernel=platform.release(),
            host=platform.node(),
            leakhunt_version=__version__,
        ),
        interval_s=float(interval),
        snapshots=snapshots,
        findings=findings,
        memory=tuple(memory),
        quality=stats.quality(),
        options=(("top", "10"),),
    )
    return inv, " ".join(argv), text


def via_leakhunt(backend: str, duration: float, interval: int, target_seconds: float) -> tuple[Path, str]:
    """`leakhunt run` on report_leaker with one backend; returns the JSON report it wrote.

    A target that outlives the run is stopped with SIGTERM (`leakhunt run` still exits 0); one that
    ends first gives a report marked "target exited".
    """
    target = build_target()
    out = Path(tempfile.mkdtemp(prefix="lh-fixture-"))
    cmd = [
        str(ROOT / ".venv" / "bin" / "leakhunt"),
        "run",
        "--duration",
        f"{duration:g}",
        "--interval",
        str(interval),
        "--backend",
        backend,
        "--format",
        "json",
        "--output-dir",
        str(out),
        "--",
        str(target),
        f"{target_seconds:g}",
    ]
    done = subprocess.run(cmd, check=False, env=dict(os.environ, LEAKHUNT_CACHE_AT="2"))
    if done.returncode != 0:
        raise SystemExit(f"leakhunt run failed with status {done.returncode}")
    (report,) = out.glob("*.json")
    return report, " ".join(cmd[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--via", choices=("leakhunt", "memleak"), default="leakhunt")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument(
        "--backend", choices=("bpftrace", "bcc"), action="append", help="only these (--via leakhunt)"
    )
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str]] = []
    if args.via == "memleak":
        inv, cmd, raw = via_memleak(args.duration, args.interval)
        name = "investigation-bcc-memleak.json"
        # The probe's own output, kept beside the JSON so the fixture can be checked against it.
        (OUT / "investigation-bcc-memleak.memleak.txt").write_text(raw, encoding="utf-8")
        (OUT / name).write_text(jsonio.dumps(inv), encoding="utf-8")
        made.append((name, f"scripts/capture_report_fixtures.py --via memleak (probe: {cmd})"))
    else:
        # bpftrace: the target outlives the run; bcc: the target exits before the planned end.
        for backend, target_seconds in (("bpftrace", args.duration + 30), ("bcc", args.duration - 2)):
            if args.backend and backend not in args.backend:
                continue
            report, cmd = via_leakhunt(backend, args.duration, args.interval, target_seconds)
            name = f"investigation-{backend}.json"
            shutil.copyfile(report, OUT / name)
            made.append((name, f"leakhunt {cmd}"))
    for name, how in made:
        print(f"{OUT / name}: {how}")


if __name__ == "__main__":
    main()
