"""Kernel mode with real probes: a process makes the kernel leak (eventfds it never closes).

tests/targets/kernel_fds.c creates eventfds at a fixed rate and holds them (each one a struct file
from the filp cache, a dentry and a kmalloc'd eventfd_ctx), then closes them all and stays alive.
The kernel stack of that syscall path (do_eventfd <- __x64_sys_eventfd2) must rank 1 while they are
held, and its outstanding bytes must fall once they are closed.

Kernel-wide tracing sees the whole host (other tests run concurrently), so what is asserted is
what is certain: with the allocations filtered to the target's pid (``run --kernel``), its syscall
path ranks 1; kernel-wide (memleak without -p), that path is a leak that grows at the rate the
target makes it grow, and ranks above every other stack whose growth is smaller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import Finding, Investigation, Stack
from leakhunt.report import jsonio
from tests.integration._probecli import (
    finish,
    run_leakhunt,
    start_leakhunt,
    start_target,
    stop_target,
    wait_for_stderr,
)

pytestmark = pytest.mark.probe

LEAK_S = 10  # the target holds more eventfds for this long
HOLD_S = 6  # then closes them all and lives this long
RATE = 400  # eventfds per second
SYSCALL_FRAMES = ("do_eventfd", "__x64_sys_eventfd2", "__do_sys_eventfd2")


def _eventfd_path(stack: Stack) -> bool:
    return any(f.symbol in SYSCALL_FRAMES for f in stack.frames)


def _load(output_dir: Path) -> Investigation:
    reports = sorted(output_dir.glob("leakhunt-investigation-*.json"))
    assert len(reports) == 1, reports
    doc = jsonio.load(reports[0])
    assert isinstance(doc, Investigation)
    return doc


def _while_held(inv: Investigation, start: float, end: float) -> tuple[Finding, ...]:
    """Findings over the snapshots taken while the target held its eventfds (start..end s)."""
    snaps = [s for s in inv.snapshots if start <= s.t <= end]
    assert len(snaps) >= 4, [s.t for s in inv.snapshots]
    return analyze_snapshots(snaps)


def _biggest_eventfd_series(inv: Investigation) -> list[int]:
    findings = [f for f in inv.findings if _eventfd_path(f.stack)]
    assert findings, "no kernel stack through the eventfd syscall was seen"
    biggest = max(findings, key=lambda f: max(p.outstanding_bytes for p in f.series))
    return [p.outstanding_bytes for p in biggest.series]


def test_held_eventfds_rank_first_and_fall_when_closed(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    binary = build_target("kernel_fds")
    proc = start_leakhunt(
        ["run", "--kernel", "--backend", "bpftrace", "--duration", "60", "--interval", "1",
         "--output-dir", str(tmp_path), "--format", "json,md", "--",
         str(binary), str(LEAK_S), str(HOLD_S), str(RATE), "eventfd"]
    )  # fmt: skip
    code, _out, err = finish(proc, timeout=180)
    assert code == 0, err
    inv = _load(tmp_path)
    assert inv.target.comm == "kernel_fds"
    assert ("mode", "kernel") in inv.options
    # the command starts when the probes are in (t=0): the eventfds are held from 0 to LEAK_S
    held = _while_held(inv, 0.5, LEAK_S - 1.0)
    top = held[0]
    assert _eventfd_path(top.stack), [f.stack.key[:200] for f in held[:5]]
    assert top.verdict == "leak"
    assert top.stack.frames[0].module == "kernel"
    # every snapshot of the biggest eventfd stack: up while held, back near zero once closed
    series = _biggest_eventfd_series(inv)
    peak = max(series)
    assert peak >= RATE * 64 * (LEAK_S - 2), series  # >= 64 bytes per eventfd for most of the run
    assert series[-1] <= peak * 0.1, series
    # the whole run: those stacks came and went, so none of them is a leak
    assert not any(_eventfd_path(f.stack) and f.verdict == "leak" for f in inv.findings)
    md = next(tmp_path.glob("*.md")).read_text()
    assert "do_eventfd" in md


def test_a_full_kernel_map_makes_the_stacks_it_missed_unknown_never_leaks(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    # 400 eventfds a second for 6 s (a few kernel objects each) overflow a 1,024-key map; then all
    # are closed. Before the map's sizes were read back, the allocations it could not hold were
    # counted and their frees never matched: the eventfd path stayed up as a leak.
    binary = build_target("kernel_fds")
    proc = start_leakhunt(
        ["run", "--kernel", "--backend", "bpftrace", "--map-keys", "1024", "--duration", "60",
         "--interval", "1", "--output-dir", str(tmp_path), "--format", "json,md", "--",
         str(binary), "6", "3", str(RATE), "eventfd"]
    )  # fmt: skip
    code, _out, err = finish(proc, timeout=180)
    assert code == 0, err
    inv = _load(tmp_path)
    assert inv.quality.map_full is True
    ours = [f for f in inv.findings if _eventfd_path(f.stack)]
    assert ours, [f.stack.key[:200] for f in inv.findings[:5]]
    assert not any(f.verdict == "leak" for f in ours), [(f.verdict, f.reason) for f in ours]
    assert any(f.verdict == "unknown" and f.reason.startswith("unknown: map full") for f in ours)
    md = next(tmp_path.glob("*.md")).read_text()
    assert "Incomplete data: the probe's map of live allocations was full" in md.split("\n\n")[1], md[:800]


def test_kernel_wide_memleak_sees_the_eventfd_path_grow(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    binary = build_target("kernel_fds")
    # kernel-wide: make the path grow well above the host's own churn, for long enough that
    # memleak (slow to print when the whole host holds many allocations) prints 4+ snapshots
    # (seen: 4-7 s per block under load, whatever the interval)
    rate, leak_s = 500, 34
    proc = start_leakhunt(
        ["investigate", "--kernel", "--backend", "bcc", "--duration", "40", "--interval", "2",
         "--output-dir", str(tmp_path), "--format", "json"]
    )  # fmt: skip
    target = None
    try:
        wait_for_stderr(proc, "probes attached", timeout=150)
        target = start_target(binary, str(leak_s), "2", str(rate), "eventfd")
        code, _out, err = finish(proc, timeout=120)
    finally:
        if target is not None:
            stop_target(target)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    inv = _load(tmp_path)
    assert inv.backend.name == "bcc"
    assert inv.target.pid == 0
    # the target started right after "probes attached" (session time ~0): take the snapshots
    # from when it surely ran to before it surely closed. A block memleak prints slowly (seconds
    # under load) is stamped when it starts, and may already show closes 2-3 s before leak_s:
    # a margin of 5 s (the last block before the closes used to be in, judged a plateau)
    held = _while_held(inv, 2.0, leak_s - 5.0)
    top = [(f.rank, f.verdict, round(f.growth_bytes_per_sec), f.stack.key[:300]) for f in held[:8]]
    path = [
        (f.rank, f.verdict, f.reason, [(p.t, p.outstanding_bytes) for p in f.series])
        for f in held
        if _eventfd_path(f.stack)
    ]
    ours = [f for f in held if _eventfd_path(f.stack) and f.verdict == "leak"]
    assert ours, (path, top, inv.quality.notes)
    best = max(ours, key=lambda f: f.growth_bytes_per_sec)
    # memleak counts what its -o (500 ms) filter keeps: at least a filp per eventfd and second
    assert best.growth_bytes_per_sec >= rate * 64 * 0.5, top
    bigger = [f for f in held if f.rank < best.rank]
    assert all(f.growth_bytes_per_sec >= best.growth_bytes_per_sec * 0.5 for f in bigger), top


def test_scan_notices_the_kernel_slab_growing_and_names_the_cache(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    """scan (as root) samples SUnreclaim and /proc/slabinfo: held eventfds grow the filp cache."""
    binary = build_target("kernel_fds")
    target = start_target(binary, "14", "1", "800", "eventfd")
    try:
        code, _out, err = run_leakhunt(
            ["scan", "--pid", str(target.pid), "--duration", "10", "--interval", "1",
             "--output-dir", str(tmp_path), "--format", "json,md"],
            timeout=120,
        )  # fmt: skip
    finally:
        stop_target(target)
    assert code == 0, err
    [saved] = tmp_path.glob("leakhunt-scan-*.json")
    doc = json.loads(saved.read_text())
    kernel = doc["kernel_memory"]
    assert kernel["signal"] == "SUnreclaim" and len(kernel["samples"]["t"]) >= 10  # schema v2 columns
    names = [c["name"] for c in kernel["caches"]]
    # 800 struct files a second (192-256 bytes each): the fastest-growing cache on a host whose
    # other tasks' files come and go; the kernel's other caches may hold second place
    assert "filp" in names[:3], kernel["caches"]
    filp = next(c for c in kernel["caches"] if c["name"] == "filp")
    assert filp["slope_bytes_per_sec"] >= 800 * 128, filp
    md = next(tmp_path.glob("leakhunt-scan-*.md")).read_text()
    assert "Kernel memory: the unreclaimable slab" in md and "`filp`" in md
