"""Folded-stack export: what flamegraph.pl, inferno and speedscope read.

Inputs are the real investigations in tests/fixtures/diff/ (BCC memleak 0.26 runs of
tests/targets/fixleak.c, see the README there) and, for traces and hostile names, documents built
from the model. speedscope (npm, in headless chromium) reads the output back.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.errors import UsageError
from leakhunt.model import (
    BackendInfo,
    Finding,
    Frame,
    Investigation,
    RunInfo,
    ScanResult,
    SeriesPoint,
    Snapshot,
    Stack,
    StackSample,
    Target,
    TraceProcess,
    TraceResult,
    Unfreed,
)
from leakhunt.report import jsonio, render
from leakhunt.report.folded import folded_lines, frame_label, render_folded
from tests.conftest import diff_fixture
from tests.viewers import speedscope_number, speedscope_sandwich

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "diff"


def load_investigation(name: str) -> Investigation:
    return diff_fixture(name)


def parse_folded(text: str) -> dict[tuple[str, ...], int]:
    """Read folded lines the way flamegraph.pl does: the value after the last space."""
    out: dict[tuple[str, ...], int] = {}
    for line in text.splitlines():
        stack, _, value = line.rpartition(" ")
        out[tuple(stack.split(";"))] = int(value)
    return out


def one_finding_doc(frames: tuple[Frame, ...], *, outstanding: int = 4096, count: int = 4) -> Investigation:
    stack = Stack(frames)
    finding = Finding(
        rank=1,
        stack=stack,
        verdict="leak",
        outstanding_bytes=outstanding,
        count=count,
        growth_bytes_per_sec=100.0,
        confidence=0.9,
        first_seen=0.0,
        last_seen=2.0,
        series=(SeriesPoint(0.0, 0, 0), SeriesPoint(2.0, outstanding, count)),
    )
    snaps = (Snapshot(0.0, ()), Snapshot(2.0, (StackSample(stack, outstanding, count),)))
    return Investigation(
        target=Target(pid=7, comm="t", cmdline=("t",)),
        backend=BackendInfo(name="bcc", tool="memleak-bpfcc", version="0.26.0", argv=()),
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=2.0),
        interval_s=1.0,
        snapshots=snaps,
        findings=(finding,),
    )


def test_real_investigation_outermost_first_with_outstanding_bytes() -> None:
    inv = load_investigation("investigation-v1.json")
    stacks = parse_folded("".join(line + "\n" for line in folded_lines(inv)))
    leak = ("__libc_start_call_main", "main", "handle", "parse_request")
    assert leak in stacks  # outermost first, offsets and modules gone
    by_top = {f.stack.top: f for f in inv.findings}
    assert stacks[leak] == by_top["parse_request"].outstanding_bytes
    assert stacks[("__libc_start_call_main", "main", "handle", "open_session")] == (
        by_top["open_session"].outstanding_bytes
    )
    assert sum(stacks.values()) == sum(f.outstanding_bytes for f in inv.findings)


def test_value_count_and_growth() -> None:
    inv = load_investigation("investigation-v1.json")
    by_top = {f.stack.top: f for f in inv.findings}
    counts = parse_folded("\n".join(folded_lines(inv, "count")))
    assert (
        counts[("__libc_start_call_main", "main", "handle", "parse_request")] == by_top["parse_request"].count
    )
    growth = parse_folded("\n".join(folded_lines(inv, "growth")))
    leak = by_top["parse_request"]
    # Present at the first snapshot: growth is what it added while leakhunt watched.
    assert growth[("__libc_start_call_main", "main", "handle", "parse_request")] == (
        leak.series[-1].outstanding_bytes - leak.series[0].outstanding_bytes
    )
    assert 0 < growth[("__libc_start_call_main", "main", "handle", "parse_request")] < leak.outstanding_bytes


def test_unknown_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        list(folded_lines(load_investigation("investigation-v1.json"), "seconds"))


def test_render_dispatch_writes_the_same_text() -> None:
    inv = load_investigation("investigation-v2.json")
    direct, via = io.StringIO(), io.StringIO()
    render_folded(inv, direct)
    render(inv, "folded", via)
    assert direct.getvalue() == via.getvalue()
    assert direct.getvalue().endswith("\n")


def test_semicolons_and_newlines_inside_frames_cannot_split_a_stack() -> None:
    frames = (
        Frame("evil;frame\nwith\tbreaks", 1, "x"),
        Frame("std::map<int; int>::insert", 2, "libstdc++.so.6"),
        Frame("[unknown]", None, "libc.so.6"),
        Frame("main", 3, "x"),
    )
    lines = list(folded_lines(one_finding_doc(frames)))
    assert len(lines) == 1
    stack = parse_folded(lines[0])
    assert list(stack) == [
        ("main", "[unknown] [libc.so.6]", "std::map<int: int>::insert", "evil:frame with breaks")
    ]
    assert frame_label(Frame("  ")) == "[unknown]"


def test_same_function_different_offsets_are_summed() -> None:
    base = load_investigation("investigation-v1.json")
    f = base.findings[0]
    moved = Stack(tuple(Frame(fr.symbol, (fr.offset or 0) + 4, fr.module, None) for fr in f.stack.frames))
    twin = Finding(**{**f.__dict__, "rank": 99, "stack": moved})
    inv = Investigation(**{**base.__dict__, "findings": (f, twin)})
    stacks = parse_folded("\n".join(folded_lines(inv)))
    assert list(stacks.values()) == [2 * f.outstanding_bytes]


def test_zero_values_are_left_out() -> None:
    inv = one_finding_doc((Frame("leaky", 1, "x"),), outstanding=0, count=0)
    assert list(folded_lines(inv)) == []


def test_trace_becomes_process_and_block_size_stacks() -> None:
    tr = TraceResult(
        target=Target(pid=42, comm="trace_leaker", cmdline=("./trace_leaker",)),
        backend=BackendInfo(name="bcc", tool="memleak-bpfcc", version="0.26.0", argv=()),
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=5.0),
        processes=(
            TraceProcess(
                pid=42,
                comm="trace_leaker",
                alloc_count=10,
                free_count=7,
                unknown_frees=0,
                unfreed=(
                    Unfreed(0x1000, 64, 42, 1.0),
                    Unfreed(0x2000, 64, 42, 2.0),
                    Unfreed(0x3000, 7, 42, 3.0),
                ),
            ),
        ),
        end_time=5.0,
    )
    assert parse_folded("\n".join(folded_lines(tr))) == {
        ("trace_leaker (pid 42)", "64-byte blocks"): 128,
        ("trace_leaker (pid 42)", "7-byte blocks"): 7,
    }
    assert (
        parse_folded("\n".join(folded_lines(tr, "count")))[("trace_leaker (pid 42)", "64-byte blocks")] == 2
    )


def test_real_trace_totals_match_the_unfreed_blocks() -> None:
    tr = jsonio.load(FIXTURES.parent / "exports" / "trace-bcc-0.26.json")
    assert isinstance(tr, TraceResult)
    stacks = parse_folded("\n".join(folded_lines(tr)))
    for proc in tr.processes:
        root = f"{proc.comm} (pid {proc.pid})"
        assert sum(v for k, v in stacks.items() if k[0] == root) == proc.unfreed_bytes
    counts = parse_folded("\n".join(folded_lines(tr, "count")))
    assert sum(counts.values()) == sum(p.unfreed_count for p in tr.processes)


def test_scan_has_no_stacks() -> None:
    scan = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=1),
        interval_s=1,
        processes=(),
        sampled=0,
        unreadable=0,
    )
    with pytest.raises(UsageError, match="no call stacks"):
        list(folded_lines(scan))


symbols = st.text(min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(symbols, min_size=1, max_size=6), min_size=1, max_size=5))
def test_any_symbols_give_one_line_per_stack_with_every_frame(stacks: list[list[str]]) -> None:
    findings = []
    for i, names in enumerate(stacks):
        frames = tuple(Frame(n, i, "m") for n in names)
        doc = one_finding_doc(frames, outstanding=100 + i)
        findings.append(doc.findings[0])
    base = one_finding_doc((Frame("x"),))
    inv = Investigation(**{**base.__dict__, "findings": tuple(findings)})
    out = io.StringIO()
    render_folded(inv, out)
    text = out.getvalue()
    parsed = parse_folded(text)
    assert sum(parsed.values()) == sum(100 + i for i in range(len(stacks)))
    for line in text.splitlines():
        stack, _, value = line.rpartition(" ")
        assert value.isdigit()
        assert all(part.strip() for part in stack.split(";"))
    for i, names in enumerate(stacks):
        # Each input stack's frame count survives (identical stacks merge, so look for the sum).
        key = tuple(frame_label(Frame(n, i, "m")) for n in reversed(names))
        assert key in parsed and len(key) == len(names)


def test_speedscope_reads_the_folded_file(tmp_path: Path) -> None:
    inv = load_investigation("investigation-v1.json")
    path = tmp_path / "leak.folded"
    with path.open("w") as fh:
        render_folded(inv, fh)
    rows = {r.name: r for r in speedscope_sandwich(path)}
    by_top = {f.stack.top: f for f in inv.findings}
    for name in ("parse_request", "open_session", "fill_cache"):
        assert speedscope_number(rows[name].self_) == by_top[name].outstanding_bytes
    assert speedscope_number(rows["main"].total) == sum(f.outstanding_bytes for f in inv.findings)
    assert speedscope_number(rows["main"].self_) == 0
