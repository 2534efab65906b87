"""A tool's Python traceback is cut down to the error it ends with (issue 13, item 14)."""

from __future__ import annotations

from pathlib import Path

from leakhunt.errors import ProbeFailed, without_traceback
from leakhunt.probe.tools import denied_hint

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


def test_denied_maps_say_what_is_denied() -> None:
    """Issue 13 item 15: as root, "run leakhunt as root" is wrong; say what the kernel refused."""
    full = (1 << 41) - 1
    nice, ptrace, resource = 1 << 23, 1 << 19, 1 << 24
    assert denied_hint(7, 1000, 0, full, "") == "run leakhunt as root (sudo)"
    no_ptrace = denied_hint(7, 0, full & ~ptrace & ~nice, full, "")
    assert "without CAP_SYS_PTRACE" in no_ptrace and "CAP_SYS_NICE" in no_ptrace
    # what this machine's pid 1 shows: root with CAP_SYS_PTRACE, the target holds one more
    lsm = denied_hint(1, 0, full & ~resource, full, "")
    assert "as root" in lsm and "CAP_SYS_RESOURCE" in lsm and "run leakhunt as root" not in lsm
    assert "ptrace_scope is 3" in denied_hint(7, 0, full, full, "3")
