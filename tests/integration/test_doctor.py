"""`leakhunt doctor` on this host: what it finds, and the fix it prints for what is missing."""

from __future__ import annotations

import subprocess

import pytest

from leakhunt.probe import tools
from tests.integration._probecli import LEAKHUNT, run_leakhunt

pytestmark = pytest.mark.probe


def test_doctor_reports_a_ready_host_with_tool_versions(probe_env: None) -> None:
    code, out, err = run_leakhunt(["doctor"])
    assert code == 0, out + err
    bpftrace = tools.find_bpftrace()
    memleak = tools.find_memleak()
    assert bpftrace is not None and memleak is not None
    assert f"{bpftrace.path} {bpftrace.version}" in out
    assert f"{memleak.path} {memleak.version}" in out
    assert "bpftrace loads a program: BEGIN probe ran" in out
    assert "FAIL" not in out
    assert "ready: leakhunt can probe with native, bcc, bpftrace (auto picks native: " in out
    assert "ok   leakhunt's own probe: BCC " in out


def test_doctor_prints_the_fix_for_missing_tools(probe_env: None) -> None:
    missing = {
        "LEAKHUNT_BPFTRACE": "",
        "LEAKHUNT_MEMLEAK": "",
        "LEAKHUNT_NATIVE_PYTHON": "/nonexistent/python3",
    }
    code, out, _err = run_leakhunt(["doctor"], env=missing)
    assert code == 2
    assert "FAIL bpftrace: not found" in out
    assert "fix: sudo apt-get install -y bpftrace" in out
    assert "fix: sudo apt-get install -y bpfcc-tools" in out
    assert "not ready" in out


def test_doctor_without_privileges(probe_env: None) -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            "--",
            *LEAKHUNT,
            "doctor",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "FAIL privileges: uid 65534 without root" in done.stdout
    assert "fix: sudo leakhunt doctor" in done.stdout
