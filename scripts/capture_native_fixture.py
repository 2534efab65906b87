#!/usr/bin/env python3
"""Capture the native probe's host output on a C++ target into tests/fixtures/ (parser fixture).

    sudo flock -o /tmp/leakhunt-probe.lock .venv/bin/python scripts/capture_native_fixture.py

Runs tests/targets/cpp_leaker.cc, attaches leakhunt's native probe to it the way the session does
(leakhunt.probe.native.command), lets it print 4 snapshots a second apart, stops it with SIGINT
(it prints one more) and writes what it printed to tests/fixtures/native-bcc-VERSION-cpp.txt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leakhunt.probe import native, tools  # noqa: E402
from leakhunt.probe.backend import ProbeOptions  # noqa: E402
from tests.conftest import compile_target  # noqa: E402


def main() -> None:
    host = native.find_host()
    if host is None or os.geteuid() != 0:
        sys.exit("needs root and a system python3 with BCC (python3-bpfcc)")
    target = subprocess.Popen([str(compile_target("cpp_leaker")), "30"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        with tempfile.TemporaryDirectory() as work:
            cmd = native.command(
                host, target.pid, tools.target_libc(target.pid), ProbeOptions(interval=1.0),
                workdir=work, reason="fixture capture",
            )  # fmt: skip
            probe = subprocess.Popen(
                cmd.argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **dict(cmd.env)}
            )
            assert probe.stdout is not None
            lines: list[str] = []
            for line in probe.stdout:
                lines.append(line)
                if sum(1 for x in lines if x == "E\n") >= 4:
                    probe.send_signal(signal.SIGINT)
                    lines.extend(probe.stdout)
                    break
            probe.wait(timeout=30)
    finally:
        target.kill()
        target.wait()
    out = ROOT / "tests" / "fixtures" / f"native-bcc-{host.version}-cpp.txt"
    out.write_text("".join(lines))
    print(f"wrote {out} ({len(lines)} lines)")


if __name__ == "__main__":
    main()
