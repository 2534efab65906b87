"""Property tests: parsers never raise on arbitrary input, and what a generator prints in each
tool's format parses back to what generated it."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.model import Frame, Snapshot
from leakhunt.parse import ParseStats
from leakhunt.parse.bpftrace import parse_bpftrace
from leakhunt.parse.memleak import parse_memleak
from leakhunt.parse.trace import parse_trace

# --- arbitrary input ----------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "[08:46:22] Top 10 stacks with outstanding allocations:",
        "\t16384 bytes in 16 allocations from stack",
        "\t\t0x0000563cc6a8f18b\tleaky_alloc+0x12 [leak]",
        "\taddr = 563cd58debc0 size = 1024",
        "\t0 [<0000563cc6a8f18b>] leaky_alloc+0x12 [/tmp/leak]",
        "@bytes[",
        "]: 12",
        "    f+1",
        "08:51:02",
        '{"type": "time", "data": "08:51:02\\n"}',
        '{"type": "map", "data": {"@bytes": {"": 1}}}',
        "(b'top', 1, 0, b'...11', 1.0, b'alloc exited, size = 7, result = 10')",
        "('Unknown', 0, 0, 'Unknown', 0.0, 'Unknown')",
        "A 1 2 3 ff 4 c",
        "F 1 2 3 ff c",
        "Traceback (most recent call last):",
        "KeyboardInterrupt",
        "",
    ]
)
# arbitrary bytes, decoded the way leakhunt reads files (errors="replace"), split into lines
_BYTES_LINES = st.binary(max_size=600).map(lambda b: b.decode("utf-8", errors="replace").splitlines())
_MIXED_LINES = st.lists(
    st.one_of(_FRAGMENTS, st.text(max_size=80), _FRAGMENTS.map(lambda s: s[: len(s) // 2])), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_BYTES_LINES, _MIXED_LINES))
def test_no_parser_raises_on_arbitrary_lines(lines: list[str]) -> None:
    for parse in (parse_memleak, parse_bpftrace, parse_trace):
        stats = ParseStats()
        list(parse(lines, stats))
        assert stats.lines == len(lines)
        assert stats.unparsed <= len(lines) and len(stats.unparsed_examples) <= 5


# --- round trips --------------------------------------------------------------------------------

_NAME = (
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_:<>, ()~]{0,30}", fullmatch=True)
    .map(str.strip)
    .filter(lambda s: bool(s) and not s.endswith(("]", ")")) and "  " not in s)
)
_MODULE = st.from_regex(r"[a-z][a-z0-9_.+-]{0,15}", fullmatch=True)
_FRAME = st.builds(
    Frame,
    symbol=_NAME,
    offset=st.integers(0, 0xFFFFF),
    module=_MODULE,
    # user-space addresses as x86-64 prints them: 12 hex digits (bpftrace >= 0.24's JSON glues the
    # address to the symbol, and the parser relies on that width to split them)
    address=st.integers(0x100000000000, 0x7FFFFFFFFFFF),
)
_STACK_SAMPLES = st.lists(
    st.tuples(st.lists(_FRAME, min_size=1, max_size=6), st.integers(1, 10**12), st.integers(1, 10**6)),
    max_size=6,
    # distinct as printed (bpftrace's default keys show neither module nor address; 0.24 drops spaces)
    unique_by=lambda t: tuple((f.symbol.replace(" ", ""), f.offset) for f in t[0]),
)


def _bcc_block(clock: int, top: int, stacks: list[tuple[list[Frame], int, int]]) -> list[str]:
    h, m, s = clock // 3600, clock // 60 % 60, clock % 60
    out = [f"[{h:02d}:{m:02d}:{s:02d}] Top {top} stacks with outstanding allocations:"]
    for frames, size, count in stacks:
        out.append(f"\t{size} bytes in {count} allocations from stack")
        out.extend(f"\t\t0x{f.address:016x}\t{f.symbol}+{f.offset:#x} [{f.module}]" for f in frames)
    return out


def _libbpf_block(clock: int, top: int, stacks: list[tuple[list[Frame], int, int]]) -> list[str]:
    h, m, s = clock // 3600, clock // 60 % 60, clock % 60
    out = [f"[{h}:{m}:{s}] Top {len(stacks)} stacks with outstanding allocations:"]
    for frames, size, count in stacks:
        out.append(f"{size} bytes in {count} allocations from stack")
        out.extend(
            f"\t{i} [<{f.address:016x}>] {f.symbol}+{f.offset:#x} [/usr/lib/{f.module}]"
            for i, f in enumerate(frames)
        )
    return out


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3600), _STACK_SAMPLES), min_size=1, max_size=5),
    st.sampled_from(["bcc", "libbpf"]),
)
def test_generated_memleak_blocks_parse_back(
    blocks: list[tuple[int, list[tuple[list[Frame], int, int]]]], flavor: str
) -> None:
    make = _bcc_block if flavor == "bcc" else _libbpf_block
    lines = ["Attaching to pid 42, Ctrl+C to quit."]
    clock = 8 * 3600
    clocks = []
    for step, stacks in blocks:
        clock += step
        clocks.append(clock)
        lines += make(clock, 10, stacks)
    stats = ParseStats()
    snaps = list(parse_memleak(lines, stats))
    assert stats.unparsed == 0
    assert [s.t for s in snaps] == [float(c - clocks[0]) for c in clocks]
    for snap, (_, stacks) in zip(snaps, blocks, strict=True):
        assert [(list(s.stack.frames), s.outstanding_bytes, s.count) for s in snap.stacks] == stacks
        # BCC prints its -T value; libbpf-tools the number shown (so a full block may be cut)
        assert snap.truncated == (len(stacks) >= 10 if flavor == "bcc" else bool(stacks))


def _bt_key(frames: list[Frame], *, perf: bool, spaces: bool) -> str:
    if perf:
        parts = [f"\t{f.address:x} {f.symbol}+{f.offset} (/usr/lib/{f.module})" for f in frames]
    else:
        parts = [f"    {f.symbol}+{f.offset}" for f in frames]
    key = "\n" + "\n".join(parts) + "\n"
    return key if spaces else key.replace(" ", "")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_STACK_SAMPLES, min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from(["json", "json-0.24", "text"]),
)
def test_generated_bpftrace_output_parses_back(
    intervals: list[list[tuple[list[Frame], int, int]]], perf: bool, form: str
) -> None:
    lines: list[str] = []
    for i, stacks in enumerate(intervals):
        clock = f"10:00:{i:02d}"
        spaces = form != "json-0.24"
        keys = [_bt_key(frames, perf=perf, spaces=spaces) for frames, _, _ in stacks]
        if form == "text":
            lines.append(clock)
            for name, numbers in (("@bytes", [s[1] for s in stacks]), ("@count", [s[2] for s in stacks])):
                for key, number in zip(keys, numbers, strict=True):
                    lines += [f"{name}[", *key.strip("\n").split("\n"), f"]: {number}"]
                lines.append("")
        else:
            lines.append(json.dumps({"type": "time", "data": clock + "\n"}))
            for name, numbers in (("@bytes", [s[1] for s in stacks]), ("@count", [s[2] for s in stacks])):
                # bpftrace prints integers a double cannot hold as strings
                values = {k: str(n) if n > 2**53 else n for k, n in zip(keys, numbers, strict=True)}
                lines.append(json.dumps({"type": "map", "data": {name: values}}))
    stats = ParseStats()
    snaps = list(parse_bpftrace(lines, stats))
    assert stats.unparsed == 0
    assert len(snaps) == len(intervals)
    for i, (snap, stacks) in enumerate(zip(snaps, intervals, strict=True)):
        assert snap.t == float(i)
        got = [
            ([(f.symbol, f.offset) for f in s.stack.frames], s.outstanding_bytes, s.count)
            for s in snap.stacks
        ]
        want = [([(_strip(f.symbol, form), f.offset) for f in fr], size, count) for fr, size, count in stacks]
        assert got == want
        if perf:
            assert [[f.module for f in s.stack.frames] for s in snap.stacks] == [
                [_strip(f.module or "", form) for f in fr] for fr, _, _ in stacks
            ]
            if form != "json-0.24":
                assert [[f.address for f in s.stack.frames] for s in snap.stacks] == [
                    [f.address for f in fr] for fr, _, _ in stacks
                ]


def _strip(text: str, form: str) -> str:
    return text.replace(" ", "") if form == "json-0.24" else text


_EVENTS = st.lists(
    st.tuples(st.booleans(), st.integers(1, 2**47), st.integers(0, 2**32), st.integers(1, 2**22)),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_EVENTS, st.booleans(), st.sampled_from(["top", "my prog", "it's", 'say "hi"']))
def test_generated_trace_tuples_parse_back(
    events: list[tuple[bool, int, int, int]], py2: bool, comm: str
) -> None:
    def quote(text: str) -> str:
        return repr(text) if py2 else repr(text.encode())

    lines = []
    for i, (is_alloc, address, size, tid) in enumerate(events):
        t = 1000.0 + i / 1000
        if is_alloc:
            msg = f"alloc exited, size = {size}, result = {address:x}"
        else:
            msg = f"free entered, address = {address:x}, size = {size}"
        lines.append(f"({quote(comm)}, {tid}, 1, {quote('...11')}, {t!r}, {quote(msg)})")
    stats = ParseStats()
    parsed = list(parse_trace(lines, stats))
    assert stats.unparsed == 0
    assert [(e.kind == "alloc", e.address, e.size, e.tid) for e in parsed] == [
        (a, addr, size, tid) for a, addr, size, tid in events
    ]
    assert all(e.comm == repr(comm)[1:-1] for e in parsed)


def test_snapshot_type() -> None:
    snaps = list(parse_memleak(_bcc_block(0, 1, [([Frame("f", 1, "m", 2)], 3, 4)])))
    assert isinstance(snaps[0], Snapshot) and snaps[0].truncated
