"""Ctrl-C or SIGTERM during `leakhunt import`: the reports cover what was read, status 130.

A real `leakhunt import -` reads a pipe that this test writes part of a log into and then holds
open (a capture still being written, or a slow source); the signal comes once the import has read
everything written, and it must not wait for more.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leakhunt.app.importing import _Reading
from leakhunt.interrupt import Interruption, sigterm_as_interrupt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def trace_log(allocs: int, frees: int) -> bytes:
    lines = ["leakhunt: tid 100 pid 100"]
    for i in range(allocs):
        head = f"(b'app', 100, 1, b'...11', {1000 + i / 1e3:.6f}, "
        lines.append(head + "b'alloc entered, size = 48')")
        lines.append(head + f"b'alloc exited, size = 48, result = {0x1000 + i * 64:x}')")
    for i in range(frees):
        head = f"(b'app', 100, 1, b'...11', {1001 + i / 1e3:.6f}, "
        lines.append(head + f"b'free entered, address = {0x1000 + i * 64:x}, size = 0')")
    return ("\n".join(lines) + "\n").encode()


def _caught(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def import_then_signal(text: bytes, tmp_path: Path, sig: int) -> tuple[int, str, dict[str, Any]]:
    """`leakhunt import -` of a pipe holding ``text`` and kept open; ``sig`` once it read it all
    and listens for the stop. Returns the status, the output and the JSON report."""
    assert len(text) < 60_000  # (all of it in the pipe at once: the write does not wait)
    out_dir = tmp_path / "out"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "leakhunt", "import", "-", "--output-dir", str(out_dir), "--format", "json"],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # (a test runner started in the background ignores SIGINT, and its children would)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    os.close(read_end)
    try:
        os.write(write_end, text)
        deadline = time.monotonic() + 60
        # all read (nothing left in the pipe), and the import's handler in place (SIGTERM caught)
        while fcntl.ioctl(write_end, termios.FIONREAD, b"\0\0\0\0") != b"\0\0\0\0" or not _caught(
            proc.pid, signal.SIGTERM
        ):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the import did not read the pipe"
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)  # (the pipe is still open: it must not wait)
    finally:
        os.close(write_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reports = list(out_dir.glob("*.json"))
    assert len(reports) == 1, f"status {proc.returncode}: {output.decode()}"
    return proc.returncode, output.decode(), json.loads(reports[0].read_text())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_trace_import_stopped_reports_what_it_read(tmp_path: Path, sig: int) -> None:
    status, output, doc = import_then_signal(trace_log(300, 100), tmp_path, sig)
    assert status == 130, output
    assert doc["stop_reason"] == "interrupted"
    notes = doc["quality"]["notes"]
    assert isinstance(notes, list) and notes[0].startswith("the import was interrupted"), notes
    assert "first 701 lines" in notes[0]
    (process,) = doc["processes"]
    assert (process["alloc_count"], process["free_count"], process["unfreed_count"]) == (300, 100, 200)
    assert "Traceback" not in output
    assert "interrupted: the reports cover what was read of -" in output


def test_a_stack_log_import_stopped_reports_its_snapshots(tmp_path: Path) -> None:
    text = (FIXTURES / "bcc-0.31-periodic-a.txt").read_bytes()
    starts = [i for i, line in enumerate(text.splitlines(keepends=True)) if b"Top " in line]
    assert len(starts) == 4
    head = b"".join(text.splitlines(keepends=True)[: starts[3]])  # three blocks, the fourth not begun
    status, output, doc = import_then_signal(head, tmp_path, signal.SIGINT)
    assert status == 130, output
    assert doc["stop_reason"] == "interrupted"
    assert len(doc["snapshots"]) == 3
    assert doc["quality"]["notes"][0].startswith("the import was interrupted"), doc["quality"]["notes"]


def test_a_stop_asked_between_reads_ends_the_log_before_the_next_read() -> None:
    """The other half: a stop that comes while a block is matched (not in a read) lets nothing
    more be read; the pieces already handed on stay handed on."""
    stop = Interruption()
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    got = []
    for piece in _Reading().pieces(source(), stop):
        got.append(piece)
        if piece == 2:
            stop.asked = True  # what the handler records outside a read
    assert got == [0, 1, 2]
    assert pulled == [0, 1, 2]


def test_a_stop_raises_only_where_the_caller_says_and_a_second_one_is_ignored() -> None:
    """sigterm_as_interrupt(raise_when=...): the first signal is recorded, and raises only when
    raise_when() is true; a second one neither raises nor stops anything."""
    now = False
    with sigterm_as_interrupt(raise_when=lambda: now) as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # (delivered to this thread before kill returns)
        assert stop.asked
        os.kill(os.getpid(), signal.SIGINT)  # ignored: already stopping
        assert stop.repeated
    with sigterm_as_interrupt(raise_when=lambda: True) as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGHUP)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # (interrupted: left ignoring)
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
