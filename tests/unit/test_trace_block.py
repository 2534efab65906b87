"""memleak -t lines a block at a time (parse.trace_block) and matched with array operations
(app.tracefeed.feed_lines, TraceMatcher.match_block): the same events, counts, unfreed blocks and
data-quality figures as the line-by-line parser and matcher, on captured traces and on generated
logs."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leakhunt.analyze.trace as trace_analysis
from leakhunt.analyze.trace import TraceMatcher, TraceSummary
from leakhunt.app import tracefeed
from leakhunt.app.tracefeed import feed_line, feed_lines
from leakhunt.errors import ReportError
from leakhunt.inputfile import read_blocks, read_byte_blocks
from leakhunt.parse import ParseStats, lines_of
from leakhunt.parse.detect import detect_kind
from leakhunt.parse.trace import TraceParser
from leakhunt.parse.trace_block import parse_tuple_block

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAPTURED = sorted(FIXTURES.glob("bcc-*-trace*.txt"))


def same_as_line_parser(data: bytes) -> int:
    """Every plain line of ``data`` means what TraceParser makes of it; returns how many are."""
    block = parse_tuple_block(data)
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    assert block.lines == len(lines)
    events = dict(zip(block.line.tolist(), range(len(block.line)), strict=True))
    for number in range(block.lines):
        text = lines[number].decode("utf-8", "surrogateescape")
        assert data[block.starts[number] : block.ends[number]] == lines[number]
        parser = TraceParser()
        fields = parser.feed_fields(text)
        if not block.plain[number]:
            assert number not in events
            continue
        assert parser.memleak_lines and parser.stats.unparsed == 0 and parser.foreign == 0
        if number not in events:
            assert fields is None  # an "alloc entered" line
            continue
        assert fields is not None, text
        kind, t, pid, tid, _comm, address, size, _known = fields
        i = events[number]
        assert (kind == "alloc") == bool(block.is_alloc[i]), text
        assert (t, tid, address) == (float(block.t[i]), int(block.tid[i]), int(block.address[i])), text
        assert pid == tid
        if kind == "alloc":
            assert size == int(block.size[i]), text
    return int(block.plain.sum())


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.name)
def test_captured_memleak_traces_are_read_whole_and_alike(path: Path) -> None:
    data = path.read_bytes()
    plain = same_as_line_parser(data)
    tuples = sum(1 for line in data.splitlines() if line.startswith(b"(b'"))
    assert plain == tuples  # every tuple memleak printed takes the block path
    # CRLF and a missing last newline: those lines are left to TraceParser, nothing is lost
    same_as_line_parser(data.replace(b"\n", b"\r\n")[:-2])


# pieces of tuples, right and wrong, for lines TraceParser and the block parser must agree on
TASKS = st.sampled_from(
    ["b'app'", "b'a, b'", 'b"it\'s"', "'py2'", "b'Unknown'", "b''", "b'\u00e9t\u00e9'", "b'x'y'"]
)
NUMBERS = st.sampled_from(
    ["0", "1", "42", "007", "4294967296", "12345678", "123456789", " 5", "5 ", "-1", "1_0", "", "x"]
)
TIMES = st.sampled_from(
    [
        "811.035782",
        "1.5",
        "0.000001",
        "1000.0",
        "12345678.123456",
        "123456789012.345",
        "1234567890123.456",
        "5",
        ".5",
        "5.",
        "1e3",
        "1.2.3",
        " 1.5",
        "nan",
        "inf",
        "01.50",
        "99999999999999.9",
    ]
)
ADDRESSES = st.sampled_from(
    ["55f84656d4e0", "0", "1", "ffffffffffffffff", "1ffffffffffffffff", "ABCdef", "0x10", "g1", "", " 10"]
)


@st.composite
def tuple_lines(draw: st.DrawFn) -> str:
    message = draw(
        st.sampled_from(
            [
                "alloc entered, size = {n}",
                "alloc exited, size = {n}, result = {a}",
                "free entered, address = {a}, size = {n}",
                "free entered, address = {a}",
                "alloc exited, size = {n}, result = {a}, x = 1",
                "alloc exited,  size = {n}, result = {a}",
                "other message {n}",
            ]
        )
    ).format(n=draw(NUMBERS), a=draw(ADDRESSES))
    quote = draw(st.sampled_from(["b'", "'", 'b"']))
    close = "'" if "'" in quote else '"'
    sep = draw(st.sampled_from([", ", ", ", ", ", ",", ",  "]))
    fields = [
        draw(TASKS),
        draw(NUMBERS),
        draw(NUMBERS),
        draw(st.sampled_from(["b'...11'", "b'd.,1'", "b'x'"])),
    ]
    line = (
        "("
        + sep.join([*fields, draw(TIMES), quote + message + close])
        + draw(st.sampled_from([")", ")", "", ") "]))
    )
    return line


@settings(max_examples=400, deadline=None)
@given(st.lists(tuple_lines(), min_size=1, max_size=8))
def test_plain_lines_mean_what_the_line_parser_says(lines: list[str]) -> None:
    same_as_line_parser("\n".join(lines).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    block = parse_tuple_block(data)
    assert block.lines == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


# --- the matcher: array path == line-by-line path ---------------------------------------------


def line_by_line(lines: list[str], pids: list[int] | None) -> tuple[TraceSummary, ParseStats, TraceParser]:
    matcher = TraceMatcher(pids=pids)
    parser = TraceParser(ParseStats())
    for line in lines:
        feed_line(matcher, parser, line)
    return matcher.summary(end_time=parser.end_time), parser.stats, parser


def in_blocks(lines: list[str], pids: list[int] | None) -> tuple[TraceSummary, ParseStats, TraceParser]:
    matcher = TraceMatcher(pids=pids)
    parser = feed_lines(matcher, lines, ParseStats())
    return matcher.summary(end_time=parser.end_time), parser.stats, parser


def assert_same(lines: list[str], pids: list[int] | None = None) -> TraceSummary:
    want, want_stats, want_parser = line_by_line(lines, pids)
    got, got_stats, got_parser = in_blocks(lines, pids)
    assert got == want
    assert got_stats == want_stats
    for name in ("tid_pid", "foreign", "unknown_tuples", "failed_allocs", "memleak_lines", "bpftrace_lines"):
        assert getattr(got_parser, name) == getattr(want_parser, name), name
    return got


@st.composite
def trace_logs(draw: st.DrawFn) -> list[str]:
    """A memleak -t log of a few threads of one or two processes: allocations, frees (of live
    blocks, of unknown blocks, twice), reused addresses, equal and (rarely) backward times,
    thread notes, and other lines between."""
    tids = draw(st.lists(st.sampled_from([100, 101, 102, 200, 201]), min_size=1, max_size=4, unique=True))
    lines = []
    if draw(st.booleans()):
        lines += [f"leakhunt: tid {t} pid {t // 100 * 100}" for t in tids]
    t = 1000.0
    live: list[int] = []
    for _ in range(draw(st.integers(0, 300))):
        tid = draw(st.sampled_from(tids))
        step = draw(st.sampled_from([0.0, 0.000001, 0.000001, 0.25, 1.5, -0.000002]))
        t = round(t + step, 6)
        what = draw(st.sampled_from(["alloc", "alloc", "free", "free", "free-unknown", "other", "entered"]))
        head = f"(b'app', {tid}, 1, b'...11', {t:.6f}, "
        if what == "alloc" or (what == "free" and not live):
            fresh = 0x1000 + (len(lines) * 7919 % 4096) * 16  # new, in no particular order
            address = draw(st.sampled_from([*live[-3:], fresh, fresh, fresh, 0xDEAD0]))
            size = draw(st.sampled_from([0, 16, 4096]))
            lines.append(head + f"b'alloc exited, size = {size}, result = {address:x}')")
            live.append(address)
        elif what == "free":
            address = live.pop(draw(st.integers(0, len(live) - 1)))
            lines.append(head + f"b'free entered, address = {address:x}, size = 0')")
        elif what == "free-unknown":
            address = draw(st.sampled_from([0xDEAD0, 0xBEEF0, *live[-1:]]))
            lines.append(head + f"b'free entered, address = {address:x}, size = 0')")
        elif what == "entered":
            lines.append(head + "b'alloc entered, size = 16')")
        else:
            lines.append(
                draw(
                    st.sampled_from(
                        [
                            "garbage",
                            "",
                            "Lost 3 events",
                            f"leakhunt: tid {tid} pid 200",
                            "(b'other', 7, 0, b'...1', 1.0, b'something else')",
                            head + "b'alloc exited, size = 8, result = 0')",
                            "('Unknown', 0, 0, 'Unknown', 0.0, 'Unknown')",
                        ]
                    )
                )
            )
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace_logs(), st.sampled_from([None, [100], [200]]), st.sampled_from([256, 4096, 1 << 20]))
def test_array_matching_gives_what_line_by_line_matching_gives(
    lines: list[str], pids: list[int] | None, block_chars: int
) -> None:
    old = tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS
    tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS = block_chars, 2
    try:
        assert_same(lines, pids)
    finally:
        tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS = old


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.name)
def test_captured_traces_match_alike_in_blocks(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracefeed, "BLOCK_CHARS", 3000)
    text = path.read_text()
    got = assert_same(text.splitlines())
    assert got.events > 0 or "Traceback" in text  # the -b captures: memleak crashed at once
    # pieces of many lines (read_blocks' blocks) are the same lines to feed_lines
    cut = text.index("\n", len(text) // 2) + 1
    pieces = TraceMatcher()
    feed_lines(pieces, [text[:cut], text[cut:]])
    assert pieces.summary() == got


def test_many_plain_events_take_the_array_path() -> None:
    """Not a timing: that a long run of plain events does not go line by line (if it did, the
    parser would count them one by one, which the line counter shows)."""
    lines = ["leakhunt: tid 100 pid 100"]
    for i in range(2000):
        head = f"(b'app', 100, 1, b'...11', {1000 + i / 1e6:.6f}, "
        lines.append(head + f"b'alloc exited, size = 8, result = {0x1000 + i * 16:x}')")
    for i in range(0, 2000, 2):
        head = f"(b'app', 100, 1, b'...11', {1001 + i / 1e6:.6f}, "
        lines.append(head + f"b'free entered, address = {0x1000 + i * 16:x}, size = 0')")
    matcher = TraceMatcher()
    calls = 0
    original = TraceParser.feed_fields

    def counting(self: TraceParser, line: str) -> object:
        nonlocal calls
        calls += 1
        return original(self, line)

    TraceParser.feed_fields = counting  # type: ignore[method-assign,assignment]
    try:
        parser = feed_lines(matcher, lines)
    finally:
        TraceParser.feed_fields = original  # type: ignore[method-assign]
    s = matcher.summary()
    assert parser.stats.lines == 3001
    assert calls <= 2  # the note, and the first event (it creates the process with its name)
    (proc,) = s.processes
    assert (proc.alloc_count, proc.free_count, proc.unfreed_count) == (2000, 1000, 1000)
    assert s == line_by_line(lines, None)[0]


def test_blocks_parsed_by_either_thread_are_matched_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker thread is slow here: the matching thread parses later blocks itself while it
    waits, and every block is still matched in order (the result is the line-by-line one)."""
    lines = ["leakhunt: tid 100 pid 100"]
    for i in range(3000):
        head = f"(b'app', 100, 1, b'...11', {1000 + i / 1e3:.6f}, "
        lines.append(head + f"b'alloc exited, size = {i % 50}, result = {0x1000 + (i % 700) * 16:x}')")
        if i % 3:
            lines.append(head + f"b'free entered, address = {0x1000 + ((i * 7) % 700) * 16:x}, size = 0')")
    here: list[int] = []
    original = parse_tuple_block

    def slow_in_the_worker(data: bytes) -> object:
        if threading.current_thread() is threading.main_thread():
            here.append(len(data))
        else:
            time.sleep(0.05)
        return original(data)

    monkeypatch.setattr(tracefeed, "parse_tuple_block", slow_in_the_worker)
    monkeypatch.setattr(tracefeed, "BLOCK_CHARS", 8192)
    monkeypatch.setattr(trace_analysis, "_MIN_ARRAY_EVENTS", 2)
    got = assert_same(lines)
    assert here, "the matching thread parsed no block"
    assert got.processes[0].alloc_count == 3000


def test_blocks_beyond_64_bits_stay_exact_between_array_blocks() -> None:
    """A size of 20 digits (read by TraceParser, not by the block parser) cannot go into the
    matcher's arrays: the blocks around it are matched one event at a time, with the same result."""
    lines = ["leakhunt: tid 100 pid 100"]
    t = 1000.0
    for round_ in range(3):
        for i in range(40):
            t += 0.000001
            head = f"(b'app', 100, 1, b'...11', {t:.6f}, "
            if i == 5:
                lines.append(head + f"b'alloc exited, size = {10**19 + round_}, result = abc0')")
            elif i == 30 and round_ == 1:
                lines.append(head + "b'free entered, address = abc0, size = 0')")
            elif i % 3 == 2:
                lines.append(head + f"b'free entered, address = {0x1000 + (i - 2) * 16:x}, size = 0')")
            else:
                lines.append(head + f"b'alloc exited, size = {i}, result = {0x1000 + i * 16:x}')")
    old = tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS
    tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS = 2000, 2
    try:
        got = assert_same(lines)
    finally:
        tracefeed.BLOCK_CHARS, trace_analysis._MIN_ARRAY_EVENTS = old
    (proc,) = got.processes
    assert any(u.size >= 10**19 for u in proc.unfreed)


# --- reading in blocks -------------------------------------------------------------------------


def blocks_of(data: bytes, size: int) -> list[str]:
    st_ = os.stat_result((stat.S_IFREG, 0, 0, 0, 0, 0, len(data), 0, 0, 0))
    return list(read_blocks(io.BytesIO(data), "log", st_, max_line=64, size=size))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 20])
def test_blocks_hold_whole_lines_with_newlines_converted(size: int) -> None:
    data = "a\r\nb\rc\n\u00e9\xff\n\nlast".encode("utf-8", "surrogateescape")
    data = data.replace("\xff".encode("utf-8", "surrogateescape"), b"\xff")
    blocks = blocks_of(data, size)
    assert all(b.endswith("\n") for b in blocks[:-1])
    assert "".join(blocks) == "a\nb\nc\n\u00e9\ufffd\n\nlast"
    assert list(lines_of(blocks)) == ["a\n", "b\n", "c\n", "\u00e9\ufffd\n", "\n", "last"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"a", b"\r", b"\n", b"\xc3", b"\xa9", b"\xff", b"\xe2\x82", b"(b'x', 1"]),
        max_size=60,
    )
)
def test_byte_blocks_are_the_text_blocks_encoded(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    st_ = os.stat_result((stat.S_IFREG, 0, 0, 0, 0, 0, len(data), 0, 0, 0))
    for size in (1, 3, 1 << 20):
        try:
            raw = list(read_byte_blocks(io.BytesIO(data), "log", st_, size=size))
        except ReportError as err:
            assert not data, err
            continue
        assert all(b.endswith(b"\n") for b in raw[:-1])
        text = read_blocks(io.BytesIO(data), "log", st_, size=size)
        assert b"".join(raw) == "".join(text).encode()
        assert b"".join(raw).decode() == data.decode("utf-8", "replace").replace("\r\n", "\n").replace(
            "\r", "\n"
        )


def test_blocks_refuse_an_empty_input_and_an_endless_line() -> None:
    with pytest.raises(ReportError, match="empty"):
        blocks_of(b"", 4)
    with pytest.raises(ReportError, match="line 2 is too long"):
        blocks_of(b"ok\n" + b"x" * 100, 8)


def test_detection_reads_blocks_and_gives_them_back() -> None:
    text = (FIXTURES / "bcc-0.31-trace.txt").read_text()
    pieces = [text[: text.index("\n", 5000) + 1], text[text.index("\n", 5000) + 1 :]]
    detection, rest = detect_kind(iter(pieces))
    assert detection.kind == "memleak-trace"
    assert list(rest) == pieces
