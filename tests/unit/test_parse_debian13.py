"""Parsers on Debian 13's tools: bpftrace 0.23 and BCC 0.31, captured in the trixie root of
scripts/debian13.sh (`scripts/debian13.sh --capture`; tests/fixtures/README.md). Numbers pinned
from the committed captures."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from leakhunt.app.tracefeed import replay
from leakhunt.parse import ParseStats
from leakhunt.parse.bpftrace import MAP_FULL_NOTE, parse_bpftrace
from leakhunt.parse.memleak import parse_memleak
from tests.unit.test_trace_match import expected

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NEW = ("operator new(unsigned long)", 28, "libstdc++.so.6.0.33")  # trixie's libstdc++


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


@pytest.mark.parametrize(
    ("name", "clocks", "note"),
    [
        ("bpftrace-0.23-protocol.json", ("12:39:41", 6), "bpftrace attached 6 probes"),
        ("bpftrace-0.23-protocol.txt", ("12:39:50", 6), "Attaching 6 probes..."),
    ],
)
def test_bpftrace_023_perf_stacks(name: str, clocks: tuple[str, int], note: str) -> None:
    """0.23's JSON escapes stack keys twice (``"\\\\n\\\\t7f.. operator new..."``); once decoded
    they are the same frames as the text form's."""
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines(name), stats))
    assert stats.unparsed == 0 and note in stats.notes and "leakhunt: attached" in stats.notes
    assert (snaps[0].clock, len(snaps)) == clocks
    biggest = max(snaps[0].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (954368, 901)
    top, caller, outer = biggest.stack.frames
    assert (top.symbol, top.offset, top.module) == NEW
    assert top.address is not None and top.address > 0x7F0000000000
    assert (caller.symbol, caller.offset, caller.module) == ("main", 840, "cpp_leaker")
    # 0.23 leaves libc's start frame unsymbolized: an address only
    assert outer.symbol.startswith("0x7f") and outer.module is None
    assert snaps[-1].t == 5.0


@pytest.mark.parametrize(
    ("name", "snapshots", "first"),
    [
        ("bpftrace-0.23-protocol-default-stack.json", 7, (1040384, 1001)),
        ("bpftrace-0.23-protocol-default-stack.txt", 6, (954368, 901)),
    ],
)
def test_bpftrace_023_default_stacks(name: str, snapshots: int, first: tuple[int, int]) -> None:
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines(name), stats))
    assert stats.unparsed == 0 and len(snaps) == snapshots
    assert not any("empty stack keys" in n for n in stats.notes)  # 0.17's lookup failures are gone
    biggest = max(snaps[0].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == first
    assert [(f.symbol, f.offset) for f in biggest.stack.frames[:2]] == [NEW[:2], ("main", 840)]


def test_bcc_031_periodic_cpp() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("bcc-0.31-periodic-cpp.txt"), stats))
    assert stats.unparsed == 0 and len(snaps) == 4
    assert [s.clock for s in snaps[:3]] == ["12:37:25", "12:37:26", "12:37:28"]
    biggest = max(snaps[0].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (614400, 600)
    frames = biggest.stack.frames
    assert (frames[0].symbol, frames[0].offset, frames[0].module) == NEW
    assert frames[0].address == 0x7F2B256B3BAC
    assert (frames[1].symbol, frames[1].offset) == ("main", 840)
    assert frames[2].is_unknown and frames[2].module == "libc.so.6"


def test_bcc_031_addresses_first_then_stacks() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("bcc-0.31-periodic-a.txt"), stats))
    assert stats.unparsed == 0 and [len(s.stacks) for s in snaps] == [0, 4, 4, 4]
    biggest = max(snaps[-1].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (128000, 32)
    assert [(f.symbol, f.offset) for f in biggest.stack.frames[:2]] == [("work", 250), ("worker", 56)]


def test_bcc_031_kernel_allocators() -> None:
    (snap,) = parse_memleak(lines("bcc-0.31-kernel.txt"))
    biggest = max(snap.stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (43286528, 10568)
    assert biggest.stack.frames[0].module == "kernel"
    assert biggest.stack.frames[0].symbol == "__alloc_frozen_pages_noprof"


def test_bcc_031_combined_only_works_and_an_interrupted_cleanup_is_not_a_crash() -> None:
    """0.26 crashed at every --combined-only interval; 0.31 prints the stacks (no addresses), and
    SIGINT during its exit cleanup prints "Exception ignored in atexit callback" and a traceback."""
    stats = ParseStats()
    snaps = list(parse_memleak(lines("bcc-0.31-combined-only.txt"), stats))
    assert stats.unparsed == 0 and len(snaps) == 2
    assert not any("crashed" in n for n in stats.notes)
    assert "memleak was interrupted while cleaning up at exit (its output is complete)" in stats.notes
    biggest = max(snaps[-1].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (2080768, 2001)
    assert biggest.stack.frames[0].address is None


@pytest.mark.parametrize(
    ("name", "processes"), [("bcc-0.31-trace", 3), ("bpftrace-0.23-trace", 1), ("bcc-0.31-trace-two-a", 3)]
)
def test_captured_traces_replay_to_exactly_what_the_target_leaked(name: str, processes: int) -> None:
    leaks, count, total = expected(f"{name}.expected")
    stats = ParseStats()
    summary = replay(lines(f"{name}.txt"), stats)
    assert len(summary.processes) == processes  # memleak -t names threads, bpftrace the process
    assert {(u.address, u.size, u.tid) for p in summary.processes for u in p.unfreed} == leaks
    assert sum(p.unfreed_bytes for p in summary.processes) == total
    assert sum(p.unfreed_count for p in summary.processes) == count
    assert stats.unparsed == 0


def test_second_bcc_031_tracer_still_crashes_on_the_busy_trace_pipe() -> None:
    stats = ParseStats()
    summary = replay(lines("bcc-0.31-trace-two-b.txt"), stats)
    assert summary.events == 0 and stats.unparsed == 0
    assert any("crashed" in n and "Device or resource busy" in n for n in stats.notes)


@pytest.mark.parametrize(
    ("name", "clock"),
    [
        ("bpftrace-0.23-protocol-mapfull.json.gz", "15:22:52"),
        ("bpftrace-0.23-protocol-mapfull.txt.gz", "15:22:56"),
    ],
)
def test_bpftrace_023_map_full_errors_on_stdout(name: str, clock: str) -> None:
    """Maps of 512 keys: 0.23 reports each of its 6,734 failed map updates on stdout, as a
    ``helper_error`` object (JSON) or as a located warning, its helper, the script line and carets
    (text). None is an unparsed line; the run is marked map full, with one note that counts them."""
    text = gzip.decompress((FIXTURES / name).read_bytes()).decode()
    assert text.count("Map full") == 6734
    stats = ParseStats()
    snaps = list(parse_bpftrace(text.splitlines(), stats))
    assert stats.unparsed == 0, stats.unparsed_examples
    assert stats.map_full is True
    (note,) = [n for n in stats.notes if n.startswith(MAP_FULL_NOTE)]
    assert note.startswith(f"{MAP_FULL_NOTE} 6,734 map updates (Map full)")
    assert not any("helper_error" in n or "WARNING" in n for n in stats.notes)
    assert [s.clock for s in snaps] == [clock, *snaps_after(clock, 2)]
    biggest = max(snaps[0].stacks, key=lambda s: s.outstanding_bytes)
    assert (biggest.outstanding_bytes, biggest.count) == (1040384, 1001)
    assert [(f.symbol, f.offset) for f in biggest.stack.frames[:2]] == [NEW[:2], ("main", 840)]


def snaps_after(clock: str, n: int) -> list[str]:
    h, m, s = (int(x) for x in clock.split(":"))
    return [f"{h:02d}:{m:02d}:{s + i:02d}" for i in range(1, n + 1)]
