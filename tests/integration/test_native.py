"""The native backend with real probes: sampling by bytes against the exact figure, auto's choice,
and what is left behind when leakhunt stops normally, on SIGINT or on SIGKILL.

(Leak ranking, the first allocations after exec, attach mode and Ctrl-C run for every backend in
test_investigate.py, test_run.py and test_robustness.py.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration._probecli import (
    assert_no_probe_left,
    by_top_function,
    finish,
    load_report,
    run_leakhunt,
    start_leakhunt,
    wait_for_stderr,
)

pytestmark = pytest.mark.probe

SMALL = 20000 * 1000  # tests/targets/sample_leak.c: leak_small
BIG = 200 * 100000  # leak_big
UPROBE_EVENTS = ("/sys/kernel/tracing/uprobe_events", "/sys/kernel/debug/tracing/uprobe_events")


def uprobe_events() -> list[str]:
    for path in UPROBE_EVENTS:
        try:
            with open(path, encoding="utf-8") as fh:
                return [line for line in fh.read().splitlines() if line.strip()]
        except OSError:
            continue
    return []


def run_sample_leak(
    build_target: Callable[[str], Path], out: Path, *extra: str, codes: tuple[int, ...] = (0,)
) -> dict[str, Any]:
    code, _out, err = run_leakhunt(
        ["run", "--backend", "native", "--duration", "60", "--interval", "1", "--output-dir", str(out),
         "--format", "json", *extra, "--", str(build_target("sample_leak")), "4"]
    )  # fmt: skip
    assert code in codes, err
    return load_report(out)


def test_sampled_estimate_is_within_its_stated_error_of_the_exact_figure(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    exact = run_sample_leak(build_target, tmp_path / "exact")
    named = by_top_function(exact)
    # exact mode: every byte of both leaks, nothing of the churn (allocated and freed)
    assert named["leak_small"]["outstanding_bytes"] == SMALL
    assert named["leak_big"]["outstanding_bytes"] == BIG
    assert "churn" not in named

    sampled = run_sample_leak(build_target, tmp_path / "sampled", "--sample-bytes", "64k")
    assert dict(sampled["options"])["sample_bytes"] == str(64 * 1024)
    notes = sampled["quality"]["notes"]
    (note,) = [n for n in notes if n.startswith("sampled by bytes")]
    # "... at the last snapshot 40012345 B ± 1234567 B in all ...": the stated uncertainty
    found = re.search(r"last snapshot (\d+) B ± (\d+) B in all", note)
    assert found is not None, note
    total, sd = (int(x) for x in found.groups())
    # meaningful (a few percent: about 450 sampled blocks), and the estimate is within 3 of it
    assert 0 < sd < 0.1 * (SMALL + BIG), note
    assert abs(total - (SMALL + BIG)) <= 3 * sd, note
    # each stack's estimate too (a stack's variance is part of the total's)
    named = by_top_function(sampled)
    assert abs(named["leak_small"]["outstanding_bytes"] - SMALL) <= 3 * sd, note
    assert abs(named["leak_big"]["outstanding_bytes"] - BIG) <= 3 * sd, note
    # the churn was freed: a kept block's free subtracted exactly what it had added
    assert "churn" not in by_top_function(sampled)
    assert_no_probe_left(sampled["target"]["pid"])


def test_auto_picks_native_and_says_why(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    code, _out, err = run_leakhunt(
        ["run", "--duration", "5", "--interval", "1", "--output-dir", str(tmp_path), "--format", "json",
         "--", str(build_target("first_alloc")), "2"]
    )  # fmt: skip
    assert code == 7, err
    assert "backend native" in err and "target only" in err
    report = load_report(tmp_path)
    assert report["backend"]["name"] == "native"
    assert "target only" in report["backend"]["reason"]


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("how", ["duration", "SIGINT", "SIGKILL"])
def test_nothing_outlives_leakhunt(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path, how: str
) -> None:
    """No host program, no launched command, no uprobe event in tracefs, however leakhunt ends."""
    before = uprobe_events()
    # "duration": the command ends by itself (exit 0) well before the planned duration
    proc = start_leakhunt(
        ["run", "--backend", "native", "--duration", "120", "--interval", "1", "--output-dir", str(tmp_path),
         "--format", "json", "--", str(build_target("leak_mix")), "4" if how == "duration" else "60"]
    )  # fmt: skip
    wait_for_stderr(proc, "probes attached")
    family = _children(proc.pid)
    assert any("native_host.py" in " ".join(p.cmdline()) for p in family)
    if how != "duration":
        time.sleep(2)
        proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGKILL)
    code, _out, err = finish(proc, timeout=60)
    assert code == {"duration": 0, "SIGINT": 130, "SIGKILL": -9}[how], err
    deadline = time.monotonic() + 5
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    assert uprobe_events() == before
    if how != "SIGKILL":
        report = load_report(tmp_path)
        assert report["snapshots"]
        assert_no_probe_left(report["target"]["pid"])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--min-size", "50k"], {"leak_big": BIG}),  # memleak -z: the 1000 B blocks are left out
        (["--max-size", "50k"], {"leak_small": SMALL}),  # memleak -Z
        (["--older-than", "600000"], {}),  # memleak -o: nothing is ten minutes old yet
    ],
)
def test_size_and_age_filters(
    probe_env: None,
    build_target: Callable[[str], Path],
    tmp_path: Path,
    options: list[str],
    expected: dict[str, int],
) -> None:
    # nothing outstanding passes --older-than: an inconclusive run (exit 4) is a fair answer too
    report = run_sample_leak(
        build_target, tmp_path, *options, codes=(0, 4) if "--older-than" in options else (0,)
    )
    named = by_top_function(report)
    ours = {
        name: named[name]["outstanding_bytes"]
        for name in ("leak_small", "leak_big", "churn")
        if name in named
    }
    assert ours == expected


def test_one_call_site_reached_from_two_chains_at_one_stack_pointer(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    """--unwind dwarf keys a stack from a per-call-site cache (return address and stack pointer):
    two chains that reach malloc there differ only further up the stack, and keep their own
    figures (tests/targets/same_site.c: one leaks every block, the other frees every block)."""
    target = build_target("same_site")
    # the case under test: the compiler gave both callers the same frame
    alone = subprocess.run([str(target), "0"], capture_output=True, text=True, check=True, timeout=30)
    assert "frames same" in alone.stdout, alone.stdout
    code, _out, err = run_leakhunt(
        ["run", "--backend", "native", "--duration", "60", "--interval", "1", "--output-dir",
         str(tmp_path), "--format", "json", "--", str(target), "3"]
    )  # fmt: skip
    assert code == 0, err
    report = load_report(tmp_path)
    assert report["options"] and dict(report["options"]).get("unwind") is None  # the default, dwarf
    kept = [f for f in report["findings"] if any("keep_one" in frame for frame in f["frames"])]
    dropped = [f for f in report["findings"] if any("drop_one" in frame for frame in f["frames"])]
    assert [f["outstanding_bytes"] for f in kept] == [5000 * 200], kept
    assert dropped == [], dropped
    assert_no_probe_left(report["target"]["pid"])
