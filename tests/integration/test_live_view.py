"""The live view of `leakhunt run` with a real probe: a table redrawn on a terminal, lines in a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration._probecli import by_top_function, load_report, run_leakhunt

pytestmark = pytest.mark.probe


def run_under_pty(argv: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run argv with a pseudo-terminal (200 columns) as stdin, stdout and stderr; (status, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdio is the pty
        os.environ["COLUMNS"] = "200"
        os.execv(argv[0], argv)  # noqa: S606 (argv is ours: the test's python and leakhunt)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def leak_mix_run(binary: Path, out: Path) -> list[str]:
    return [
        "run",
        "--backend",
        "bpftrace",
        "--duration",
        "30",
        "--interval",
        "1",
        "--output-dir",
        str(out),
        "--format",
        "json",
        "--",
        str(binary),
        "7",
    ]


def test_live_table_is_redrawn_on_a_terminal(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    binary = build_target("leak_mix")
    code, text = run_under_pty([sys.executable, "-m", "leakhunt", *leak_mix_run(binary, tmp_path)])
    assert code == 0, text[-3000:]
    # the header is redrawn in place with each snapshot: several different counts were shown
    counts = {int(m) for m in re.findall(r"leakhunt: probing \d+/30 s, (\d+) snapshots", text)}
    assert len(counts) >= 3, text[-3000:]
    # the redraw moves the cursor up over the previous table (rich Live), no new line per snapshot
    assert "\x1b[" in text and ("\x1b[1A" in text or "\x1b[A" in text)
    # the leak appeared in the live table as a leak (the same rank 1 as in the report)
    live = text.split("stopped: ")[0]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", live)
    row = r"1\s+leak\s+[\d.]+ KiB\s+[\d.]+ [KM]iB\s+[\d.]+\s+leaky_alloc\+0x"
    assert re.search(row, plain), plain[-3000:]
    report = load_report(tmp_path)
    assert report["findings"][0]["frames"][0].startswith("leaky_alloc+0x")
    assert by_top_function(report)["leaky_alloc"]["verdict"] == "leak"


def test_plain_lines_when_stdout_is_not_a_terminal(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    binary = build_target("leak_mix")
    code, out, err = run_leakhunt(leak_mix_run(binary, tmp_path))
    assert code == 0, err
    lines = [line for line in out.splitlines() if re.match(r"leakhunt: [\d.]+ s, \d+ snapshots: ", line)]
    assert len(lines) >= 3, out
    assert "\x1b[" not in out
    # one line per snapshot, in order, and the leak shows up in them
    numbers = [int(re.findall(r"(\d+) snapshots", line)[0]) for line in lines]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert any("1. leak leaky_alloc+0x" in line for line in lines), lines
