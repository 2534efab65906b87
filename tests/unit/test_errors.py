"""A tool's Python traceback is cut down to the error it ends with (issue 13, item 14)."""

from __future__ import annotations

from pathlib import Path

from leakhunt.errors import ProbeFailed, without_traceback

CRASH = Path(__file__).resolve().parent.parent / "fixtures" / "bcc-0.26-combined-only-crash.txt"


def test_memleak_traceback_becomes_its_error_line() -> None:
    stderr = CRASH.read_text()
    assert "Traceback (most recent call last)" in stderr
    text = str(ProbeFailed("memleak ended", hint="use --backend bpftrace", stderr=stderr))
    assert "Traceback" not in text and 'File "/usr/sbin/memleak-bpfcc"' not in text
    assert "AttributeError: 'list' object has no attribute 'decode'" in text
    assert "hint: use --backend bpftrace" in text


def test_lines_around_a_traceback_stay() -> None:
    stderr = (
        'warning: first\nTraceback (most recent call last):\n  File "x", line 1\n    f()\n'
        "ValueError: bad\nafter\n"
    )
    assert without_traceback(stderr) == "warning: first\nValueError: bad\nafter"
