"""memleak -t tuples and leakhunt's bpftrace trace lines -> TraceEvents."""

from __future__ import annotations

from pathlib import Path

from leakhunt.model import TraceEvent
from leakhunt.parse import ParseStats
from leakhunt.parse.trace import TraceParser, parse_trace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def expected_leaks(name: str) -> set[tuple[int, int, int]]:
    """(address, size, tid) of every block the target says it leaked."""
    out = set()
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("leak "):
            _, addr, size, tid = line.split()
            out.add((int(addr, 16), int(size), int(tid)))
    return out


def test_captured_bcc_trace_replays_to_exactly_what_the_target_leaked() -> None:
    stats = ParseStats()
    outstanding: dict[int, TraceEvent] = {}
    with open(FIXTURES / "bcc-0.26-trace.txt") as fh:
        for ev in parse_trace(fh, stats):
            if ev.kind == "alloc":
                outstanding[ev.address] = ev
            else:
                assert outstanding.pop(ev.address).size == ev.size  # memleak prints the size it saw
    assert {(e.address, e.size, e.tid) for e in outstanding.values()} == expected_leaks(
        "bcc-0.26-trace.expected"
    )
    assert stats.unparsed == 0  # the KeyboardInterrupt traceback of Ctrl-C is the normal end
    assert all(e.comm == "trace_leaker" for e in outstanding.values())


def test_py3_tuple_fields() -> None:
    parser = TraceParser()
    ev = parser.feed(
        "(b'top', 11748, 8, b'...11', 3393.638438, b'alloc exited, size = 7, result = 56140ebca620')"
    )
    assert ev == TraceEvent(3393.638438, 11748, 11748, "top", "alloc", 0x56140EBCA620, 7)
    ev = parser.feed(
        "(b'top', 11748, 8, b'...11', 3393.638444, b'free entered, address = 56140ebc92b0, size = 7')"
    )
    assert ev == TraceEvent(3393.638444, 11748, 11748, "top", "free", 0x56140EBC92B0, 7)
    assert parser.feed("(b'top', 11748, 8, b'...11', 3393.638436, b'alloc entered, size = 7')") is None
    assert parser.stats.unparsed == 0


def test_py2_unknown_tuple_foreign_lines_and_thread_notes() -> None:
    stats = ParseStats()
    lines = (FIXTURES / "handmade" / "bcc-py2-trace-interleaved.txt").read_text().splitlines()
    parser = TraceParser(stats)
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert [(e.kind, e.tid, hex(e.address)) for e in events] == [
        ("alloc", 4242, "0x55d0c0a01010"),
        ("alloc", 4243, "0x7f0000000b70"),
        ("free", 4242, "0x55d0c0a01010"),
        ("alloc", 4242, "0x55d0c0a02020"),
        ("alloc", 4244, "0x55d0c0a03030"),
        ("free", 4243, "0x7f0000000b70"),
    ]
    assert events[4].comm == "it's"
    assert parser.unknown_tuples == 1 and parser.foreign == 1 and parser.failed_allocs == 1
    # the 'Unknown' tuple is lost data: counted and shown; the garbage line too
    assert stats.unparsed == 2
    assert stats.unparsed_examples == [
        "('Unknown', 0, 0, 'Unknown', 0.0, 'Unknown')",
        "garbage that is no tuple",
    ]
    assert any("interleaved" in n for n in stats.notes)


def test_thread_to_process_notes_set_the_pid() -> None:
    parser = TraceParser()
    assert parser.feed("leakhunt: tid 4243 pid 4242") is None
    ev = parser.feed("(b'leak', 4243, 0, b'...11', 1.5, b'alloc exited, size = 32, result = 10')")
    assert ev is not None and (ev.pid, ev.tid) == (4242, 4243)
    assert parser.stats.unparsed == 0 and parser.stats.notes == []


def test_bpftrace_trace_lines() -> None:
    stats = ParseStats()
    lines = [
        "Attaching 9 probes...",
        "leakhunt: attached",
        "A 3393638438112 11748 11750 56140ebca620 7 my prog",
        "F 3393638444000 11748 11748 56140ebca620 my prog",
        "Lost 12 events",
        "A 12 not numbers",
    ]
    events = list(parse_trace(lines, stats))
    assert events == [
        TraceEvent(3393.638438112, 11748, 11750, "my prog", "alloc", 0x56140EBCA620, 7),
        TraceEvent(3393.638444, 11748, 11748, "my prog", "free", 0x56140EBCA620, None),
    ]
    assert stats.lost_events == 12 and stats.unparsed == 1
    assert "leakhunt: attached" in stats.notes
