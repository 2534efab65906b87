"""investigate/run --mode and --kernel: contradictory or meaningless options are clear errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["investigate"], "no PID given"),
        (["investigate", "--kernel-pages", "1"], "--kernel-pages applies to kernel mode only"),
        (["investigate", "--kernel", "--mode", "growth"], "--kernel contradicts --mode growth"),
        (["investigate", "--mode", "growth", "--min-size", "4k", "1"], "growth mode sees page faults"),
        (["investigate", "--kernel", "--pid", "1", "2"], "two different pids"),
        (["investigate", "--mode", "heap", "1"], "Invalid value for '--mode'"),
    ],
)
def test_bad_mode_options_are_usage_errors(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "leakhunt", *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
