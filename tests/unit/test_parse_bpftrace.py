"""bpftrace output of leakhunt's probe protocol -> Snapshots: JSON and text, 0.17 and 0.24+ keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import Frame
from leakhunt.parse import ParseStats
from leakhunt.parse.bpftrace import BpftraceParser, parse_bpftrace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


LIBSTDCXX_NEW = ("operator new(unsigned long)", 28, "libstdc++.so.6.0.30")


def test_json_017_perf_stacks_with_demangled_frames_and_decimal_offsets() -> None:
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines("bpftrace-0.17-protocol.json"), stats))
    assert stats.unparsed == 0
    assert "leakhunt: attached" in stats.notes and "bpftrace attached 6 probes" in stats.notes
    first = snaps[0]
    assert first.clock == "09:14:31" and first.t == 0.0
    biggest = max(first.stacks, key=lambda s: s.outstanding_bytes)
    assert biggest.outstanding_bytes == 819200
    top = biggest.stack.frames[0]
    assert (top.symbol, top.offset, top.module) == LIBSTDCXX_NEW
    assert top.address is not None and top.address > 0x7F0000000000
    assert [(f.symbol, f.offset, f.module) for f in biggest.stack.frames[1:]] == [
        ("main", 631, "cpp_leaker"),
        ("__libc_start_call_main", 122, "libc.so.6"),
    ]


def test_text_017_perf_stacks_pair_bytes_with_counts() -> None:
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines("bpftrace-0.17-protocol.txt"), stats))
    assert stats.unparsed == 0
    assert [s.clock for s in snaps] == ["09:14:39", "09:14:41"]
    assert [s.t for s in snaps] == [0.0, 2.0]
    by_top = {s.stack.frames[1].symbol if len(s.stack.frames) > 1 else "": s for s in snaps[0].stacks}
    assert (by_top["main"].outstanding_bytes, by_top["main"].count) == (921600, 1100)
    assert (by_top[""].outstanding_bytes, by_top[""].count) == (1809, 11)
    # the capture ends inside the second interval (no @count printed yet): bytes without counts
    assert all(s.count is None for s in snaps[1].stacks)
    assert max(s.outstanding_bytes for s in snaps[1].stacks) == 1126400


def test_default_stack_form_and_bpftrace_017_empty_keys() -> None:
    """Captured here: after its first print, bpftrace 0.17 failed to look the stack ids up and
    printed empty keys ``@bytes[]: N``. They are summed into one stack without frames."""
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines("bpftrace-0.17-protocol-default-stack.txt"), stats))
    assert stats.unparsed == 0 and len(snaps) == 5
    first = {s.stack.key: s.outstanding_bytes for s in snaps[0].stacks}
    assert first["operator new(unsigned long)+0x1c;main+0x277;__libc_start_call_main+0x7a"] == 921600
    assert snaps[1].stacks[0].stack.frames == ()
    assert snaps[1].stacks[0].outstanding_bytes == 1584 + 4422 + 32768 + 2252800
    assert snaps[1].stacks[0].count == 1 + 22 + 22 + 2200
    assert any("empty stack keys" in n for n in stats.notes)


def test_json_024_keys_without_spaces_big_integers_lost_events_and_midnight() -> None:
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines("handmade/bpftrace-0.24-protocol.json"), stats))
    assert stats.unparsed == 0 and stats.lost_events == 7
    assert [s.t for s in snaps] == [0.0, 1.0, 2.0]  # 23:59:58, 23:59:59, 00:00:00
    leak = snaps[1].stacks[0]
    assert leak.stack.frames == (
        Frame("leaky_alloc", 15, "leak", 0x7F52EED60930),
        Frame("main", 24, "leak", 0x7F52EED60990),
    )
    assert (leak.outstanding_bytes, leak.count) == (8192, 8)
    cxx = snaps[0].stacks[1].stack.frames
    assert cxx[0] == Frame("operatornew(unsignedlong)", 28, "libstdc++.so.6.0.30", 0x7F24EB0A958C)
    assert cxx[1] == Frame("add_item", 40, "app", 0x401136)  # non-PIE address glued to the name
    assert snaps[2].stacks[0].outstanding_bytes == 18014398509481985  # a JSON string in the input
    assert snaps[2].stacks[1].stack.frames[0].is_unknown
    assert "ignored bpftrace map @other" in stats.notes


def test_time_event_completes_the_previous_snapshot() -> None:
    parser = BpftraceParser()
    assert parser.feed('{"type": "time", "data": "10:00:00\\n"}') is None
    assert parser.feed('{"type": "map", "data": {"@bytes": {"\\n    f+1\\n": 10}}}') is None
    assert parser.feed('{"type": "map", "data": {"@count": {"\\n    f+1\\n": 2}}}') is None
    done = parser.feed('{"type": "time", "data": "10:00:05\\n"}')
    assert done is not None and done.t == 0.0
    assert [(s.stack.frames, s.outstanding_bytes, s.count) for s in done.stacks] == [
        ((Frame("f", 1),), 10, 2)
    ]
    last = parser.finish()
    assert last is not None and last.t == 5.0 and last.stacks == ()


def test_maps_printed_again_at_exit_make_a_new_snapshot() -> None:
    stats = ParseStats()
    text = [
        "10:00:00",
        "@bytes[",
        "    f+1",
        "]: 10",
        # bpftrace 0.17 prints two empty lines before the maps it prints at exit
        "",
        "",
        "@bytes[",
        "    f+1",
        "]: 30",
        "@stk[12345]: ",
        "    f+1",
        "",
    ]
    snaps = list(parse_bpftrace(text, stats))
    assert [(s.t, s.stacks[0].outstanding_bytes) for s in snaps] == [(0.0, 10), (1.0, 30)]
    assert stats.unparsed == 0 and "ignored bpftrace map @stk" in stats.notes


def test_stacks_freed_back_to_zero_are_dropped_and_garbage_counted() -> None:
    stats = ParseStats()
    text = [
        "Attaching 3 probes...",
        "10:00:00",
        "@bytes[",
        "    f+1",
        "]: 0",
        "@bytes[",
        "    g+2",
        "]: 5",
        "Lost 3 events",
        "what is this",
        '{"type": "printf", "data": "hello from someone else\\n"}',
        "{not json",
    ]
    snaps = list(parse_bpftrace(text, stats))
    assert [s.stack.frames[0].symbol for s in snaps[0].stacks] == ["g"]
    assert stats.lost_events == 3 and stats.unparsed == 2
    assert stats.unparsed_examples == ["what is this", "{not json"]


@pytest.mark.parametrize("name", ["bpftrace-0.17-equal-texts.txt", "bpftrace-0.17-equal-texts.json"])
def test_entries_with_equal_stack_text_add_up(name: str) -> None:
    # Short-lived threads each leaking 234 B: their stacks print alike, one entry per stack id.
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines(f"handmade/{name}"), stats))
    assert stats.unparsed == 0
    assert len(snaps) == 4  # equal keys within one print are not a second print of the map
    for k, snap in enumerate(snaps, start=1):
        by_top = {s.stack.frames[0].symbol: s for s in snap.stacks}
        threads = by_top["[unknown]"] if "[unknown]" in by_top else by_top["0x7f3e5c9ff6d4"]
        assert (threads.outstanding_bytes, threads.count) == (3 * k * 234, 3 * k)
        assert by_top["main"].outstanding_bytes == 1024
    findings = analyze_snapshots(snaps, min_growth_bytes=1024)
    assert findings[0].verdict == "leak" and findings[0].stack.frames[0].is_unknown


def test_a_map_printed_again_without_a_time_event_is_still_a_new_snapshot() -> None:
    # bpftrace prints every map at exit: the second print starts again from the smallest value
    text = [
        "10:00:01",
        "@bytes[",
        "\tleaky+1",
        "]: 100",
        "@bytes[",
        "\tcache+1",
        "]: 5000",
        "@bytes[",
        "\tleaky+1",
        "]: 200",
        "@bytes[",
        "\tcache+1",
        "]: 5000",
    ]
    snaps = list(parse_bpftrace(text))
    assert [sorted(s.outstanding_bytes for s in snap.stacks) for snap in snaps] == [[100, 5000], [200, 5000]]


def test_a_map_line_over_a_mebibyte_is_read() -> None:
    # 1,000 stacks of 25 frames in one -f json line: ~1.6 MiB (it used to be dropped whole)
    frames = "".join(
        f"\t7f00000{i:05x} function_with_a_long_name_{i}+{i} (/usr/lib/libfoo.so)\n" for i in range(25)
    )
    body = ", ".join(
        json.dumps(f"\n\t55{k:010x} caller_{k}+1 (/tmp/x)\n" + frames) + f": {k + 1}" for k in range(1000)
    )
    line = '{"type": "map", "data": {"@bytes": {' + body + "}}}"
    assert len(line) > 1 << 20
    stats = ParseStats()
    snaps = list(parse_bpftrace(['{"type": "time", "data": "10:00:01\\n"}', line], stats))
    assert stats.unparsed == 0
    assert len(snaps) == 1 and len(snaps[0].stacks) == 1000


def test_json_017_kernel_stacks_of_held_eventfds_rise_then_fall() -> None:
    """kstack(perf) keys: 16-digit kernel addresses, no module (leakhunt names it "kernel")."""
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines("bpftrace-0.17-kernel.json"), stats))
    assert stats.unparsed == 0
    assert [s.clock for s in snaps][:2] == ["12:32:37", "12:32:38"]
    assert len(snaps) == 12

    path = ["__kmalloc_cache_noprof", "do_eventfd", "__x64_sys_eventfd2"]

    def eventfd_ctx(snap_index: int) -> int:
        return sum(
            s.outstanding_bytes
            for s in snaps[snap_index].stacks
            if [f.symbol for f in s.stack.frames[:3]] == path
        )

    frame = snaps[4].stacks[0].stack.frames[0]
    assert frame.module == "kernel" and frame.address is not None and frame.address >> 48 == 0xFFFF
    # 200 eventfds/s held for 4 s (12:32:40-43), then all closed: a kmalloc-64 eventfd_ctx each
    held = [eventfd_ctx(i) for i in range(3, 7)]
    assert held == sorted(held) and held[-1] >= 600 * 64
    assert eventfd_ctx(7) == eventfd_ctx(11) == 0


def test_untracked_allocations_of_a_full_map_make_stacks_unknown_never_leaks() -> None:
    # the churn stack's allocations could not be tracked once the map was full: its @bytes only
    # holds what was tracked, and @untracked says how many were not
    text = []
    for k in range(1, 6):
        text += [
            f"10:00:0{k}",
            "@bytes[",
            "\tchurn+1",
            f"]: {4096 * k}",
            "@bytes[",
            "\tleak+1",
            f"]: {8192 * k}",
        ]
        text += ["@untracked[", "\tchurn+1", f"]: {100 * k}"]
    snaps = list(parse_bpftrace(text))
    assert [{s.top: n for s, n in snap.untracked} for snap in snaps] == [
        {"churn": 100 * k} for k in range(1, 6)
    ]
    findings = {f.stack.top: f for f in analyze_snapshots(snaps)}
    assert findings["churn"].verdict == "unknown" and findings["churn"].confidence == 0.0
    assert findings["churn"].reason.startswith("unknown: map full, 500 of its allocations were not tracked")
    assert findings["leak"].verdict == "leak" and findings["leak"].rank == 1
    assert findings["churn"].rank == 2


def test_untracked_map_in_json() -> None:
    lines_ = [
        '{"type": "time", "data": "10:00:01\\n"}',
        '{"type": "map", "data": {"@bytes": {"\\n\\tleak+1\\n": 10}}}',
        '{"type": "map", "data": {"@untracked": {"\\n\\tchurn+1\\n": 7, "\\n\\tchurn+1\\n": 3}}}',
    ]
    stats = ParseStats()
    (snap,) = parse_bpftrace(lines_, stats)
    assert [(s.top, n) for s, n in snap.untracked] == [("churn", 10)]
    assert not any("ignored" in n for n in stats.notes)
