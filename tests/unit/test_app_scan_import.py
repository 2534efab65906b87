"""The scan and import jobs run without the command line (app/scan.py, app/importing.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from leakhunt.app.importing import import_file
from leakhunt.app.scan import ScanOptions, accept_filter, run_scan, sweep_count
from leakhunt.errors import ReportError
from leakhunt.model import Investigation, TraceResult
from leakhunt.sample import Candidate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_run_scan_samples_the_chosen_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        swept: list[float] = []
        result = run_scan(
            ScanOptions(duration=1.0, interval=0.5, pids=(child.pid,)),
            lambda elapsed, stats: swept.append(elapsed),
        )
    finally:
        child.kill()
        child.wait()
    assert len(swept) == sweep_count(1.0, 0.5) == 3
    assert [p.key.pid for p in result.processes] == [child.pid]
    assert result.processes[0].name == "sleep" and len(result.processes[0].samples) == 3
    assert result.run.stop_reason == "duration" and result.interval_s == 0.5
    assert result.kernel_memory is not None  # /proc/meminfo sampled beside


def test_min_rss_leaves_small_processes_out() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        result = run_scan(ScanOptions(duration=0.0, interval=0.5, pids=(child.pid,), min_rss=1 << 40))
    finally:
        child.kill()
        child.wait()
    assert result.processes == () and result.sampled == 1


def test_accept_filter() -> None:
    assert accept_filter(None, None) is None
    accept = accept_filter(re.compile("java"), os.getuid())
    assert accept is not None
    assert accept(Candidate(1, 0.0, "java", ("java", "-jar"), os.getuid()))
    assert not accept(Candidate(1, 0.0, "java", (), os.getuid() + 1))
    assert accept(Candidate(1, 0.0, "x", ("/usr/bin/java",), os.getuid()))
    assert not accept(Candidate(1, 0.0, "node", ("node",), os.getuid()))


def test_import_file_reads_stacks_and_traces() -> None:
    said: list[str] = []
    inv = import_file(str(FIXTURES / "bcc-0.31-periodic-a.txt"), say=said.append)
    assert isinstance(inv, Investigation) and inv.snapshots and inv.findings
    assert inv.run.stop_reason == "imported"
    assert len(said) == 1 and said[0].startswith(f"{FIXTURES / 'bcc-0.31-periodic-a.txt'}: detected ")
    tr = import_file(str(FIXTURES / "bcc-0.31-trace.txt"), kind="memleak-trace")
    assert isinstance(tr, TraceResult) and tr.processes


def test_import_file_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    with pytest.raises(ReportError, match=r"junk\.txt"):
        import_file(str(junk))
