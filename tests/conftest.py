"""Shared test fixtures.

Real-probe tests ask for the ``probe_env`` fixture. Outside CI they are skipped (with the reason) when
this host cannot probe; under CI=true a host that cannot probe is a failure, never a skip.
Leaky C targets in tests/targets/*.c are compiled on demand into tests/targets/bin/.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leakhunt.model import Investigation
from leakhunt.report import jsonio

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "tests" / "targets"
TARGET_BIN = TARGETS / "bin"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cannot_probe_reason() -> str | None:
    """Why this host cannot run real probes, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("bpftrace") is None:
        return "bpftrace not installed (scripts/setup.sh)"
    if not any(
        Path(p).exists()
        for p in ("/usr/sbin/memleak-bpfcc", "/usr/share/bcc/tools/memleak", "/usr/sbin/memleak")
    ):
        return "BCC memleak not installed (scripts/setup.sh)"
    if (
        not Path("/sys/kernel/tracing/uprobe_events").exists()
        and not Path("/sys/kernel/debug/tracing/uprobe_events").exists()
    ):
        return "tracefs not mounted (scripts/setup.sh)"
    return None


def require_or_skip(reason: str | None) -> None:
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but this host cannot run this test: {reason}")
    pytest.skip(reason)


PROBE_LOCK = "/tmp/leakhunt-probe.lock"  # noqa: S108 (a fixed, shared name is the point)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Real-probe tests hold PROBE_LOCK while they run.

    Two probe sessions on the same libc function collide in the kernel ("ref_ctr_offset mismatch"),
    so suites run from several checkouts at once (or a developer's `flock -o PROBE_LOCK leakhunt ...`)
    take turns test by test instead of failing each other.
    """
    needs_lock = "probe_env" in getattr(item, "fixturenames", ()) or item.get_closest_marker("probe")
    if not needs_lock:
        yield
        return
    with open(PROBE_LOCK, "a") as fh:
        asked = time.monotonic()
        fcntl.flock(fh, fcntl.LOCK_EX)
        _LOCK_WAIT[0] += time.monotonic() - asked
        _LOCK_WAIT[1] += 1
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_LOCK_WAIT = [0.0, 0]  # seconds spent waiting for PROBE_LOCK, tests that took it


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the probe tests queued for PROBE_LOCK (the suite's time without others' probes is
    its wall time minus this)."""
    if _LOCK_WAIT[1]:
        terminalreporter.write_line(
            f"probe lock: {_LOCK_WAIT[1]} tests took it, waiting {_LOCK_WAIT[0]:.0f} s in all "
            "for others' probes"
        )


@pytest.fixture(scope="session")
def probe_env() -> None:
    """Request this in every test that runs real eBPF probes."""
    require_or_skip(cannot_probe_reason())


def compile_target(name: str, *extra_flags: str, flags: tuple[str, ...] | None = None) -> Path:
    """Compile tests/targets/NAME.c (or .cc) into tests/targets/bin/NAME, if out of date.

    ``flags`` replaces the default optimisation flags (``-O1 -fno-omit-frame-pointer``); such a build
    goes to its own binary, ``NAME-<flags>`` (``unwind_leaker--O2`` for ``("-O2",)``)."""
    TARGET_BIN.mkdir(exist_ok=True)
    src = TARGETS / f"{name}.c"
    compiler = "gcc"
    if not src.exists():
        src = TARGETS / f"{name}.cc"
        compiler = "g++"
    out = TARGET_BIN / name
    if flags is not None:
        out = TARGET_BIN / ("-".join((name, *(f.strip("-").replace("=", "") for f in flags))) or name)
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    # Frame pointers so that call stacks are complete; -O1 keeps it realistic but readable.
    opt = list(flags) if flags is not None else ["-O1", "-fno-omit-frame-pointer"]
    cmd = [compiler, *opt, "-g", "-o", str(out), str(src), *extra_flags]
    subprocess.run(cmd, check=True)
    return out


@pytest.fixture(scope="session")
def build_target() -> Callable[..., Path]:
    """``build_target("leaky")`` -> path of the compiled tests/targets/leaky.c."""
    if shutil.which("gcc") is None:
        require_or_skip("gcc not installed (scripts/setup.sh)")
    return compile_target


DIFF_FIXTURES = ROOT / "tests" / "fixtures" / "diff"


def diff_fixture(name: str) -> Investigation:
    """A real investigation from tests/fixtures/diff/ (captured by scripts/capture_diff_fixtures.sh)."""
    doc = jsonio.load(DIFF_FIXTURES / name)
    assert isinstance(doc, Investigation)
    return doc
