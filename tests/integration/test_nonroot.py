"""leakhunt runs for a user who is not root (issue 13, item 17): ``scan`` reads what that user may
read, and the set-up installs a copy every user can execute (/usr/local/bin/leakhunt, built from
the distribution's python3 into /opt/leakhunt): the checkout's .venv may use an interpreter
under /root (pyenv, mode 0700) that nobody else can run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import require_or_skip

SHARED = Path("/usr/local/bin/leakhunt")


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )


def test_scan_runs_as_nobody() -> None:
    require_or_skip(None if os.geteuid() == 0 else "runuser needs root")
    require_or_skip(None if SHARED.exists() else f"{SHARED} missing: run scripts/setup.sh as root")
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            done = as_nobody(
                str(SHARED),
                "scan",
                "--pid",
                str(sleeper.pid),
                "--duration",
                "1",
                "--interval",
                "0.25",
                "--json",
            )
        finally:
            sleeper.kill()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [p["pid"] for p in result["processes"]] == [sleeper.pid]
    assert as_nobody(str(SHARED), "--version").stdout.startswith("leakhunt")
