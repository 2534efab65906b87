"""Turn the memleak captures in tests/fixtures/diff/ into investigation JSON reports.

Run by scripts/capture_diff_fixtures.sh after it captured ``memleak-v{1,2,3}.txt``; the capture
script passes what it knew about each run (pid, tool, version, interval) on the command line:

    python scripts/build_diff_fixtures.py DIR PID1 PID2 PID3 TOOL VERSION INTERVAL DATE
"""

from __future__ import annotations

import sys
from pathlib import Path

from leakhunt import __version__
from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import BackendInfo, Investigation, RunInfo, Target
from leakhunt.parse import ParseStats
from leakhunt.parse.memleak import parse_memleak
from leakhunt.report import jsonio


def build(
    capture: Path, *, pid: int, tool: str, version: str, interval: float, version_flag: int, date: str
) -> Investigation:
    """One investigation from one memleak capture."""
    stats = ParseStats()
    lines = capture.read_text().splitlines()
    snapshots = tuple(parse_memleak(lines, stats))
    duration = snapshots[-1].t - snapshots[0].t + interval if snapshots else 0.0
    return Investigation(
        target=Target(pid=pid, comm="fixleak", cmdline=("./fixleak", "17")),
        backend=BackendInfo(
            name="bcc",
            tool=tool,
            version=version,
            argv=(tool, "-p", str(pid), str(int(interval)), str(len(snapshots))),
            reason=f"fixture: tests/targets/fixleak.c built with -DVERSION={version_flag}",
        ),
        # memleak prints UTC wall-clock times here; the run began one interval before the first block.
        run=RunInfo(
            started_at=f"{date}T{snapshots[0].clock if snapshots else '00:00:00'}+00:00",
            duration_s=duration,
            stop_reason="duration",
            leakhunt_version=__version__,
        ),
        interval_s=interval,
        snapshots=snapshots,
        findings=analyze_snapshots(snapshots),
        quality=stats.quality(),
    )


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    pids = [int(p) for p in argv[1:4]]
    tool, version, interval, date = argv[4], argv[5], float(argv[6]), argv[7]
    for v, pid in zip((1, 2, 3), pids, strict=True):
        inv = build(
            folder / f"memleak-v{v}.txt",
            pid=pid,
            tool=tool,
            version=version,
            interval=interval,
            version_flag=v,
            date=date,
        )
        out = folder / f"investigation-v{v}.json"
        with out.open("w") as fh:
            jsonio.dump(inv, fh)
        verdicts = ", ".join(f"{f.stack.top}:{f.verdict}" for f in inv.findings)
        print(f"{out}: {len(inv.snapshots)} snapshots; {verdicts}")


if __name__ == "__main__":
    main(sys.argv[1:])
