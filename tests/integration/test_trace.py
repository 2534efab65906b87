"""``leakhunt trace`` on a real target: the never-freed list is exactly what the target leaked.

tests/targets/trace_leaker.c waits for SIGUSR1, then three threads malloc/calloc/realloc/free and
keep some blocks on purpose; it prints each kept block (``leak ADDR SIZE TID``) and the totals.
The trace must list exactly those blocks, for both tracers, and `leakhunt import` of the saved raw
output must give the same result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from leakhunt.model import TraceResult
from leakhunt.report import jsonio

Leak = tuple[int, int, int]  # address, size, tid


def leakhunt(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "leakhunt", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def read_leaks(lines: list[str], prefix: str = "") -> tuple[set[Leak], int, int]:
    """What trace_leaker (``prefix=""``) or its child (``prefix="child-"``) says it kept."""
    leaks: set[Leak] = set()
    count = total = -1
    for line in lines:
        parts = line.split()
        if parts[:1] == [f"{prefix}leak"] and len(parts) == 4:
            leaks.add((int(parts[1], 16), int(parts[2]), int(parts[3])))
        elif parts[:1] == [f"{prefix}leaked"]:
            count, total = int(parts[1]), int(parts[2])
    return leaks, count, total


def only_report(directory: Path) -> TraceResult:
    (path,) = directory.glob("leakhunt-trace-*.json")
    doc = jsonio.load(path)
    assert isinstance(doc, TraceResult)
    return doc


def unfreed(doc: TraceResult, pid: int) -> set[Leak]:
    (proc,) = [p for p in doc.processes if p.pid == pid]
    return {(u.address, u.size, u.tid) for u in proc.unfreed}


@pytest.mark.probe
@pytest.mark.parametrize("backend", ["bpftrace", "bcc"])
def test_trace_lists_exactly_what_the_target_leaked_and_import_agrees(
    backend: str, probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    exe = build_target("trace_leaker")
    target = subprocess.Popen([str(exe), "50"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        assert target.stdout.readline().startswith("ready")
        raw = tmp_path / "trace.raw"
        cmd = [
            sys.executable, "-m", "leakhunt", "trace", str(target.pid), "--backend", backend,
            "--duration", "4", "--save-raw", str(raw), "--output-dir", str(tmp_path / "live"),
            "--format", "json,md",
        ]  # fmt: skip
        tracer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        err_lines: list[str] = []

        def pump() -> None:
            assert tracer.stderr is not None
            for line in tracer.stderr:
                err_lines.append(line)

        # the target starts leaking only once the probes are attached: leakhunt says so on stderr
        first = tracer.stderr.readline()
        err_lines.append(first)
        while first and "leakhunt: tracing pid" not in first:
            first = tracer.stderr.readline()
            err_lines.append(first)
        assert "leakhunt: tracing pid" in first, "".join(err_lines)
        threading.Thread(target=pump, daemon=True).start()
        target.send_signal(signal.SIGUSR1)
        out_lines = [target.stdout.readline() for _ in range(3)]
        while out_lines[-1] and not out_lines[-1].startswith("done"):
            out_lines.append(target.stdout.readline())
        out, _ = tracer.communicate(timeout=120)
    finally:
        target.kill()
        target.wait()
    assert tracer.returncode == 0, "".join(err_lines) + out
    leaks, count, total = read_leaks(out_lines)
    assert count == len(leaks) == 21 and total == sum(size for _, size, _ in leaks)

    live = only_report(tmp_path / "live")
    assert live.target.pid == target.pid and live.backend.name == backend
    assert unfreed(live, target.pid) == leaks
    (proc,) = [p for p in live.processes if p.pid == target.pid]
    assert (proc.unfreed_count, proc.unfreed_bytes) == (count, total)
    assert proc.alloc_count - proc.free_count + proc.unknown_frees >= count
    assert f"{count} never freed" in out
    assert live.rate and sum(n for _, n, _ in live.rate) == sum(p.alloc_count for p in live.processes)

    assert raw.exists() and (raw.stat().st_mode & 0o777) == 0o600
    imported = leakhunt("import", str(raw), "--output-dir", str(tmp_path / "imported"), "--format", "json")
    assert imported.returncode == 0, imported.stderr
    assert "detected" in imported.stdout
    again = only_report(tmp_path / "imported")
    assert again.target.pid == target.pid
    assert again.processes == live.processes  # the same blocks, counts and frees
    assert again.end_time == live.end_time
    # where it was captured travels with the raw trace (the importing machine is never claimed)
    assert (again.run.host, again.run.kernel) == (live.run.host, live.run.kernel) and again.run.host


@pytest.mark.probe
def test_trace_of_a_command_sees_its_leaks(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    """`trace -- CMD`: the command runs only once the probes are attached (it leaks right away and
    exits, which ends the trace)."""
    exe = build_target("trace_leaker")
    started = time.monotonic()
    proc = leakhunt(
        "trace", "--duration", "60", "--output-dir", str(tmp_path), "--format", "json",
        "--", str(exe), "20", "1", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    leaks, count, _ = read_leaks(proc.stdout.splitlines())
    assert count == len(leaks) == 9
    doc = only_report(tmp_path)
    assert doc.target.launched and doc.target.comm == "trace_leaker" and doc.target.exit_code == 0
    assert doc.run.stop_reason == "target-exited"
    # the C runtime's own start-up blocks (stdio, thread stacks) are traced too: a superset
    assert leaks <= unfreed(doc, doc.target.pid)
    assert time.monotonic() - started < 60  # it ended with the command, not at --duration


@pytest.mark.probe
@pytest.mark.parametrize("backend", ["bpftrace", "bcc"])
def test_trace_of_a_command_lists_nothing_from_before_exec(
    backend: str, probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    """The gate shell that holds the command until the probes are in allocates nothing they see:
    first_alloc keeps exactly 7 blocks of 12,345 bytes and allocates nothing else, so the trace
    lists exactly those (the shell's `read` once added blocks of 5 and 28 bytes)."""
    exe = build_target("first_alloc")
    proc = leakhunt(
        "trace", "--backend", backend, "--duration", "60", "--output-dir", str(tmp_path),
        "--format", "json", "--", str(exe), "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = only_report(tmp_path)
    sizes = sorted(size for _, size, _ in unfreed(doc, doc.target.pid))
    assert sizes == [12345] * 7


@pytest.mark.probe
def test_bpftrace_traces_the_children_too_each_matched_apart(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    exe = build_target("trace_leaker")
    proc = leakhunt(
        "trace", "--backend", "bpftrace", "--duration", "60", "--output-dir", str(tmp_path),
        "--format", "json", "--", str(exe), "20", "1", "1", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    parent, count, _ = read_leaks(lines)
    child, child_count, child_bytes = read_leaks(lines, "child-")
    assert count == len(parent) == 9 and child_count == len(child) == 3
    doc = only_report(tmp_path)
    (child_pid,) = {tid for _, _, tid in child}  # one thread: its tid is its pid
    assert parent <= unfreed(doc, doc.target.pid)
    assert unfreed(doc, child_pid) == child
    (entry,) = [p for p in doc.processes if p.pid == child_pid]
    assert entry.unfreed_bytes == child_bytes


@pytest.mark.probe
def test_trace_errors_are_clear(probe_env: None, tmp_path: Path) -> None:
    proc = leakhunt("trace", "999999999", "--duration", "1", "--output-dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no process with pid" in proc.stderr
    proc = leakhunt("trace", "--older-than", "-5", str(os.getpid()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.probe
def test_ctrl_c_stops_the_trace_and_still_writes_the_report(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    exe = build_target("trace_leaker")
    target = subprocess.Popen([str(exe), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("ready")
        cmd = [sys.executable, "-m", "leakhunt", "trace", str(target.pid), "--duration", "120",
               "--output-dir", str(tmp_path), "--format", "json"]  # fmt: skip
        tracer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        line = tracer.stderr.readline()
        while line and "leakhunt: tracing pid" not in line:
            line = tracer.stderr.readline()
        target.send_signal(signal.SIGUSR1)
        said = [target.stdout.readline()]
        while said[-1] and said[-1].strip() != "done":
            said.append(target.stdout.readline())
        started = time.monotonic()
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=60)
    finally:
        target.kill()
        target.wait()
    assert tracer.returncode == 130, err
    assert time.monotonic() - started < 30  # not the 120 s asked for
    doc = only_report(tmp_path)
    assert doc.run.stop_reason == "interrupted"
    leaks, count, _ = read_leaks(said)
    assert count == 15  # 30 rounds: 3 + 2 blocks kept by each of 3 threads
    assert unfreed(doc, target.pid) == leaks
    assert "report:" in out
