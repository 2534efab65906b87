"""Helpers for the tests that run leakhunt's probing commands for real (investigate, run, doctor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LEAKHUNT = [sys.executable, "-m", "leakhunt"]
PROBE_NAMES = ("bpftrace", "memleak", "native_host")


def probes_for(pid: int) -> list[str]:
    """Command lines of live bpftrace/memleak/native host processes attached to ``pid`` (-p PID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if not words or not any(name in w for w in words[:2] for name in PROBE_NAMES):
            continue
        for i, word in enumerate(words[:-1]):
            if word == "-p" and words[i + 1] == str(pid):
                found.append(" ".join(words))
    return found


def assert_no_probe_left(pid: int) -> None:
    """No bpftrace or memleak attached to ``pid`` may survive leakhunt (give the kernel a moment)."""
    deadline = time.monotonic() + 3.0
    left = probes_for(pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = probes_for(pid)
    assert left == [], f"probe processes survived leakhunt: {left}"


def start_leakhunt(
    args: Sequence[str], env: dict[str, str] | None = None, wrapper: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """leakhunt ARGS, under ``wrapper`` (a command prefix such as ``flock FILE``) if given."""
    return subprocess.Popen(
        [*wrapper, *LEAKHUNT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
    )


def wait_for_stderr(proc: subprocess.Popen[str], needle: str, timeout: float = 120.0) -> list[str]:
    """Read leakhunt's stderr until a line contains ``needle``; the lines read so far."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"leakhunt never printed {needle!r}; stderr so far: {seen}")


def finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_leakhunt(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    wrapper: Sequence[str] = (),
) -> tuple[int, str, str]:
    proc = start_leakhunt(args, env, wrapper)
    return finish(proc, timeout)


def load_report(output_dir: Path) -> dict[str, Any]:
    """The one JSON report written into ``output_dir``."""
    reports = sorted(output_dir.glob("leakhunt-investigation-*.json"))
    assert len(reports) == 1, f"expected one JSON report in {output_dir}, found {reports}"
    data = json.loads(reports[0].read_text())
    assert isinstance(data, dict)
    return data


def by_top_function(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Findings keyed by their innermost frame's function (the first one seen for each)."""
    out: dict[str, dict[str, Any]] = {}
    for finding in report["findings"]:
        if finding["frames"]:
            name = finding["frames"][0].split("+")[0].split(" ")[0]
            out.setdefault(name, finding)
    return out


def start_target(path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(path), *args], stdout=subprocess.PIPE, text=True)
    if "--wait-signal" in args:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("waiting")  # its signal handler is installed
    return proc


def stop_target(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
