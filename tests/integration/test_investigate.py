"""`leakhunt investigate PID` with real probes on tests/targets/leak_mix.c, both backends."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from leakhunt.model import SCHEMA_VERSION
from tests.integration._probecli import (
    assert_no_probe_left,
    by_top_function,
    finish,
    load_report,
    start_leakhunt,
    start_target,
    stop_target,
    wait_for_stderr,
)

pytestmark = pytest.mark.probe


@pytest.mark.parametrize("backend", ["native", "bpftrace", "bcc"])
def test_small_leak_ranks_first_and_decoys_are_not_leaks(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path, backend: str
) -> None:
    target = start_target(build_target("leak_mix"), "--wait-signal", "60")
    try:
        proc = start_leakhunt(
            [
                "investigate",
                str(target.pid),
                "--backend",
                backend,
                "--duration",
                "12",  # the cache is built in the first 2 s (more under load: once with 8 s BCC
                "--interval",  # ranked it first); 12 s leaves 4-5 snapshots of its plateau
                "2",
                "--output-dir",
                str(tmp_path),
                "--format",
                "json,md,html",
            ]
        )
        # The target starts allocating once the probes are in, so the cache is built under them.
        wait_for_stderr(proc, "probes attached")
        target.send_signal(signal.SIGUSR1)
        code, out, err = finish(proc)
    finally:
        stop_target(target)
    assert code == 0, err
    assert_no_probe_left(target.pid)

    report = load_report(tmp_path)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["target"]["pid"] == target.pid
    assert report["target"]["comm"] == "leak_mix"
    assert report["backend"]["name"] == backend
    assert len(report["snapshots"]) >= 3
    first = report["findings"][0]
    assert first["frames"][0].startswith("leaky_alloc+0x")
    # module, then the source line when the target has DWARF (leakhunt.symbols)
    assert re.fullmatch(r"leaky_alloc\+0x[0-9a-f]+ \[leak_mix\]( \(leak_mix\.c:\d+\))?", first["frames"][0])
    assert first["verdict"] == "leak"
    # ~10 KiB/s: 512 B every 50 ms
    assert 4_000 < first["growth_bytes_per_sec"] < 16_000

    named = by_top_function(report)
    for decoy in ("cache_fill", "lru_put", "churn"):
        if decoy in named:
            assert named[decoy]["verdict"] != "leak", named[decoy]
    # The 4 MiB cache holds far more than the leak, and still ranks below it.
    cache = named["cache_fill"]
    assert cache["outstanding_bytes"] > 10 * first["outstanding_bytes"]
    assert cache["rank"] > first["rank"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".html", ".json", ".md"]
    assert "leaky_alloc" in out  # the terminal summary names it
    # the reports were written while the tool exited: stopping it was no failure, and the signs
    # it gives at the stop (bpftrace's END line, the native host's) are not notes
    notes = report["quality"]["notes"]
    signs = ("did not stop", "leakhunt: end", "native: stopped")
    assert not [n for n in notes if any(sign in n for sign in signs)], notes


def test_target_exiting_midway_still_gives_a_report(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    # 8 s of life: the 4 MiB cache fills in the first 2 s, so enough snapshots follow it to show its
    # plateau (with 5 s the cache was once still judged growing from the few snapshots left).
    target = start_target(build_target("leak_mix"), "--wait-signal", "8")
    try:
        proc = start_leakhunt(
            [
                "investigate",
                str(target.pid),
                "--duration",
                "60",
                "--interval",
                "1",
                "--output-dir",
                str(tmp_path),
                "--format",
                "json",
            ]
        )
        wait_for_stderr(proc, "probes attached")
        target.send_signal(signal.SIGUSR1)
        code, _out, err = finish(proc)
    finally:
        stop_target(target)
    assert code == 0, err
    assert_no_probe_left(target.pid)
    report = load_report(tmp_path)
    assert report["stop_reason"] == "target-exited"
    assert report["target"]["exited_early"] is True
    assert report["duration_s"] < 30
    assert any("exited" in note for note in report["quality"]["notes"])
    assert report["snapshots"], "what was gathered before the exit is kept"
    assert report["findings"][0]["frames"][0].startswith("leaky_alloc+")
