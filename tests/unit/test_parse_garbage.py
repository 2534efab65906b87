"""Frames that are not code addresses (a frame-pointer walk through code without frame pointers)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from leakhunt.model import Frame
from leakhunt.parse import ParseStats
from leakhunt.parse.frames import CALLERS_LOST_NO_FP, cut_garbage, ends_early, garbage_reason
from leakhunt.parse.memleak import parse_memleak

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_memleak_a_log_with_text_as_callers_gives_one_merged_stack() -> None:
    stats = ParseStats()
    lines = (FIXTURES / "bcc-0.26-periodic-a-nofp.txt").read_text().splitlines()
    first = next(iter(parse_memleak(lines, stats)))
    by_top = {s.stack.frames[0].symbol: s for s in first.stacks}
    store = by_top["store_line"]
    # the capture printed eight stacks for this one call site, each with a different text "caller"
    assert [f.symbol for f in store.stack.frames] == ["store_line", CALLERS_LOST_NO_FP]
    assert sum(1 for s in first.stacks if s.stack.frames[0].symbol == "store_line") == 1
    assert store.outstanding_bytes == 4 * 868 + 4 * 899
    assert store.count == 4 * 28 + 4 * 29
    # the stacks that ended without garbage are left as they are
    assert [f.symbol for f in by_top["parse_request"].stack.frames] == ["parse_request"]
    assert stats.garbage_stacks == 8
    assert any(n.startswith("callers lost: code without frame pointers") for n in stats.notes)
    assert sum(1 for n in stats.notes if n.startswith("callers lost")) == 1
    # parse_request and strdup alone: the walk stopped without garbage, which is said too
    notes = stats.quality().notes
    assert any(n.startswith("2 stacks end before main or a thread start (e.g. at ") for n in notes), notes


def test_ends_early() -> None:
    prog = Frame("parse_request", 0x19, "prog")
    main = Frame("main", 0x5A, "prog")
    assert ends_early((prog,))
    assert not ends_early((prog, main))
    assert not ends_early((prog, Frame("[unknown]", None, "libc.so.6")))
    assert not ends_early((prog, Frame(CALLERS_LOST_NO_FP)))
    assert not ends_early((Frame("kmalloc", 0x10, "kernel"),))
    assert not ends_early((prog, Frame("start_thread", 0x2F, "libc.so.6")))


def test_what_counts_as_garbage() -> None:
    assert garbage_reason(Frame("[unknown]", address=0x622D36313A383475)) == (
        "text read as an address ('u48:16-b')"
    )
    assert garbage_reason(Frame("[unknown]", address=0x0000_9000_0000_1234)) == "not a user-space address"
    assert garbage_reason(Frame("[unknown]", address=0x2A)) == "a small number, not an address"
    # ... which ends a frame-pointer chain past the program's entry: kept there, cut elsewhere
    start = Frame("__libc_start_main", 0x85, "libc.so.6", 0x7F4714B4624A)
    assert cut_garbage((start, Frame("[unknown]", address=1))) == (
        (start, Frame("[unknown]", address=1)),
        None,
    )
    mid = cut_garbage((start, Frame("[unknown]", address=1), start))
    assert mid == ((start, Frame(CALLERS_LOST_NO_FP)), "a small number, not an address")
    # a real user address, a kernel frame and a named frame are kept
    assert garbage_reason(Frame("[unknown]", address=0x00007F4714BC29AA)) is None
    assert garbage_reason(Frame("[unknown]", address=0xFFFFFFFF8160D5B1)) is None
    assert garbage_reason(Frame("main", 0x21, "prog", 0x622D36313A383475)) is None
    # the allocation site itself is never cut away
    only = (Frame("[unknown]", address=0x622D36313A383475),)
    assert cut_garbage(only) == (only, None)


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=8))
def test_cut_garbage_never_raises_and_keeps_a_prefix(values: list[int]) -> None:
    frames = tuple(Frame("[unknown]", address=v) for v in values)
    cut, reason = cut_garbage(frames)
    if reason is None:
        assert cut == frames
    else:
        assert cut[-1].symbol == CALLERS_LOST_NO_FP and cut[:-1] == frames[: len(cut) - 1]
