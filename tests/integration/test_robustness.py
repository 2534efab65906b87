"""What a user sees when probing cannot start or is interrupted: clear errors, exit codes, no
leftover probe processes, and a partial report whenever probing had begun."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration._probecli import (
    LEAKHUNT,
    assert_no_probe_left,
    finish,
    load_report,
    run_leakhunt,
    start_leakhunt,
    start_target,
    stop_target,
    wait_for_stderr,
)

pytestmark = pytest.mark.probe

# An unprivileged user that can still read the venv (which may live under /root).
AS_NOBODY = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=+dac_read_search",
    "--ambient-caps=+dac_read_search",
    "--",
]


def test_not_root_is_a_clear_error(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    target = start_target(build_target("leak_mix"), "60")
    try:
        for args in (["investigate", str(target.pid)], ["run", "--", "/bin/true"]):
            done = subprocess.run(
                [*AS_NOBODY, *LEAKHUNT, *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd="/",
            )
            assert done.returncode == 2, done.stderr
            assert "needs root" in done.stderr
            assert "CAP_BPF" in done.stderr  # names what is missing
            assert "sudo" in done.stderr
            assert "Traceback" not in done.stderr
    finally:
        stop_target(target)
    assert_no_probe_left(target.pid)


@pytest.mark.parametrize(
    ("pid", "message"),
    [("999999999", "no process with pid 999999999"), ("2", "kernel thread"), ("0", "invalid pid")],
)
def test_bad_pid_is_a_clear_error(probe_env: None, pid: str, message: str, tmp_path: Path) -> None:
    code, _out, err = run_leakhunt(["investigate", pid, "--output-dir", str(tmp_path)])
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert_no_probe_left(int(pid))


def test_missing_tools_point_to_setup(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    target = start_target(build_target("leak_mix"), "60")
    try:
        for backend in ("auto", "bpftrace", "bcc", "native"):
            code, _out, err = run_leakhunt(
                ["investigate", str(target.pid), "--backend", backend, "--output-dir", str(tmp_path)],
                env={"LEAKHUNT_BPFTRACE": "", "LEAKHUNT_MEMLEAK": "", "LEAKHUNT_NATIVE_PYTHON": ""},
            )
            assert code == 2, err
            assert "installed" in err
            assert "scripts/setup.sh" in err
    finally:
        stop_target(target)


def test_command_not_found(probe_env: None, tmp_path: Path) -> None:
    code, _out, err = run_leakhunt(["run", "--output-dir", str(tmp_path), "--", "/no/such/program"])
    assert code == 2
    assert "cannot execute /no/such/program" in err


def test_bad_options_fail_before_probing(probe_env: None, tmp_path: Path) -> None:
    for args in (["--min-size", "lots"], ["--interval", "0"], ["--backend", "dtrace"], ["--format", "pdf"]):
        code, _out, err = run_leakhunt(
            ["investigate", str(os.getpid()), *args, "--output-dir", str(tmp_path)]
        )
        assert code == 2, (args, err)
        assert "Traceback" not in err
    code, _out, err = run_leakhunt(
        [
            "investigate",
            str(os.getpid()),
            "--min-size",
            "2k",
            "--max-size",
            "1k",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "--min-size is larger than --max-size" in err


@pytest.mark.parametrize(
    ("backend", "sig"),
    [
        ("native", signal.SIGINT),
        ("native", signal.SIGTERM),
        ("bpftrace", signal.SIGINT),
        ("bpftrace", signal.SIGTERM),
        ("bcc", signal.SIGINT),
        ("bcc", signal.SIGTERM),
    ],
)
def test_interrupt_stops_probes_and_writes_partial_report(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path, backend: str, sig: signal.Signals
) -> None:
    target = start_target(build_target("leak_mix"), "60")
    try:
        proc = start_leakhunt(
            [
                "investigate",
                str(target.pid),
                "--backend",
                backend,
                "--duration",
                "120",
                "--interval",
                "1",
                "--output-dir",
                str(tmp_path),
                "--format",
                "json,html",
            ]
        )
        wait_for_stderr(proc, "probes attached")
        # let a few snapshots arrive, then interrupt leakhunt itself (as Ctrl-C or `kill` would)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=4)
        proc.send_signal(sig)
        code, _out, err = finish(proc, timeout=60)
    finally:
        stop_target(target)
    assert code == 130, err
    assert_no_probe_left(target.pid)
    report = load_report(tmp_path)
    assert report["stop_reason"] == "interrupted"
    assert any("interrupted" in note for note in report["quality"]["notes"])
    assert report["duration_s"] < 60
    assert report["snapshots"], "what was gathered before the interrupt is in the report"
    assert len(list(tmp_path.glob("*.html"))) == 1
