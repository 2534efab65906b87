"""memleak periodic blocks -> Snapshots, checked against output captured on this machine
(tests/fixtures/*.txt, see tests/fixtures/README.md) and hand-made blocks of other versions."""

from __future__ import annotations

from pathlib import Path

from leakhunt.model import Frame
from leakhunt.parse import ParseStats
from leakhunt.parse.memleak import (
    STOPPED_WHILE_PRINTING,
    MemleakParser,
    parse_memleak,
    stopped_while_printing,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_bcc_026_cpp_blocks_give_one_snapshot_per_interval_with_demangled_frames() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("bcc-0.26-periodic-cpp.txt"), stats))
    assert [s.t for s in snaps] == [0.0, 1.0, 2.0, 3.0]
    assert [s.clock for s in snaps] == ["09:07:39", "09:07:40", "09:07:41", "09:07:42"]
    assert stats.unparsed == 0
    assert stats.notes == ["Attaching to pid 8399, Ctrl+C to quit."]
    first = snaps[0]
    assert first.top_n == 5 and not first.truncated  # 4 stacks of at most 5
    biggest = first.stacks[-1]  # memleak prints the largest stack last
    assert (biggest.outstanding_bytes, biggest.count) == (512000, 500)
    assert biggest.stack.frames[0] == Frame(
        "operator new(unsigned long)", 0x1C, "libstdc++.so.6.0.30", 0x00007FDDAAAA958C
    )
    assert [f.display() for f in biggest.stack.frames[1:]] == [
        "main+0x277 [cpp_leaker]",
        "__libc_start_call_main+0x7a [libc.so.6]",
    ]
    registry = first.stacks[2]
    assert registry.stack.frames[1].symbol == "app::Registry<app::Blob>::add(unsigned long)"
    # the leak grows from block to block
    growth = [s.stacks[-1].outstanding_bytes for s in snaps]
    assert growth == sorted(growth) and growth[-1] > growth[0]


def test_bcc_026_dash_a_address_lines_are_kept_per_snapshot() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("bcc-0.26-periodic-a.txt"), stats))
    assert len(snaps) == 4 and stats.unparsed == 0
    text = (FIXTURES / "bcc-0.26-periodic-a.txt").read_text()
    last_block = text.split("Top 4 stacks")[-1]
    n_addr = sum(1 for line in last_block.splitlines() if line.startswith("\taddr = "))
    assert len(snaps[-1].addresses) == n_addr > 0
    # memleak prints one addr line per outstanding allocation of the stacks it walked
    assert sum(size for _, size in snaps[-1].addresses) >= sum(
        s.outstanding_bytes for s in snaps[-1].stacks[:-1]
    )
    assert all(isinstance(a, int) and a > 0 for a, _ in snaps[-1].addresses)
    assert snaps[-1].truncated  # 4 stacks shown of "Top 4"


def test_kernel_frames() -> None:
    snaps = list(parse_memleak(lines("bcc-0.26-kernel.txt")))
    frame = snaps[0].stacks[0].stack.frames[0]
    assert frame.module == "kernel" and frame.symbol == "__alloc_frozen_pages_noprof"
    assert frame.offset == 0x26B and frame.address == 0xFFFFFFFF8162184B


def test_combined_only_crash_of_bcc_026_becomes_a_note_not_garbage() -> None:
    stats = ParseStats()
    assert list(parse_memleak(lines("bcc-0.26-combined-only-crash.txt"), stats)) == []
    assert stats.unparsed == 0
    assert any("crashed" in n and "decode" in n for n in stats.notes)
    assert any("--combined-only" in n for n in stats.notes)


def test_combined_only_without_address_column_and_lost_stack() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("handmade/bcc-0.24-combined-only-no-address.txt"), stats))
    assert len(snaps) == 2 and stats.unparsed == 0
    vec = snaps[1].stacks[0].stack.frames[1]
    assert vec.symbol.startswith("std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>(")
    assert vec.offset == 0x5E and vec.module == "leak" and vec.address is None
    lost = snaps[1].stacks[1]
    assert lost.stack.frames == () and lost.outstanding_bytes == 4096
    assert any("lost" in n for n in stats.notes)


def test_old_format_with_spaces_blank_lines_and_unknown_frames() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("handmade/bcc-old-spaces-blank-lines.txt"), stats))
    assert stats.unparsed == 0
    assert [len(s.stacks) for s in snaps] == [1, 2]
    assert snaps[0].addresses == ((0x948CD0, 16), (0x948D10, 16))
    unknown = snaps[1].stacks[0].stack.frames
    assert unknown == (Frame("[unknown]", None, "libfoo.so"), Frame("[unknown]"))
    assert stats.unknown_frames == 2
    assert snaps[1].stacks[1].stack.frames[1] == Frame("__libc_start_main", 0xF0, "libc-2.21.so")


def test_libbpf_tools_blocks_addresses_belong_to_their_stack_and_midnight_wraps() -> None:
    stats = ParseStats()
    snaps = list(parse_memleak(lines("handmade/libbpf-tools-memleak.txt"), stats))
    assert stats.unparsed == 0
    assert [s.clock for s in snaps] == ["9:5:3", "9:5:4", "23:59:59", "0:0:1"]
    day = 86400.0
    assert [s.t for s in snaps] == [0.0, 1.0, 14.0 * 3600 + 54 * 60 + 56, day - (9 * 3600 + 5 * 60 + 3) + 1]
    first = snaps[0].stacks[0]
    assert first.addresses == ((0x563CD58DEBC0, 1024), (0x563CD58DF000, 15360))
    assert first.stack.frames[0] == Frame("leaky_alloc", 0x12, "leak", 0x563CC6A8F18B)
    assert first.stack.frames[2].module == "libc.so.6"  # full path -> base name
    assert first.stack.frames[3] == Frame("[unknown]", None, "libc.so.6", 0x7F939CE42305)
    assert first.stack.frames[4] == Frame("[unknown]", None, None, 1)
    assert snaps[0].stacks[1].stack.frames[0].symbol == "_Znwm"
    kernel = snaps[2].stacks[0].stack.frames[0]
    assert kernel == Frame("__kmalloc_cache_noprof", 0x237, None, 0xFFFFFFFF816360C7)
    blaze = snaps[3].stacks[0].stack.frames[0]
    assert (blaze.symbol, blaze.offset, blaze.module) == ("malloc", 0x7A, "malloc.c")


def test_feed_returns_a_block_when_the_next_header_arrives() -> None:
    parser = MemleakParser()
    block = [
        "[10:00:00] Top 2 stacks with outstanding allocations:",
        "\t100 bytes in 1 allocations from stack",
        "\t\t0x0000000000401000\tf+0x1 [a.out]",
    ]
    assert [parser.feed(line) for line in block] == [None, None, None]
    done = parser.feed("[10:00:05] Top 2 stacks with outstanding allocations:")
    assert done is not None and done.t == 0.0 and done.stacks[0].outstanding_bytes == 100
    last = parser.finish()
    assert last is not None and last.t == 5.0 and last.stacks == ()
    assert parser.finish() is None


def test_garbage_is_counted_with_examples() -> None:
    stats = ParseStats()
    noise = [f"noise {i}" for i in range(8)]
    snaps = list(parse_memleak(["[10:00:00] Top 1 stacks with outstanding allocations:", *noise], stats))
    assert len(snaps) == 1
    assert stats.unparsed == 8 and stats.unparsed_examples == noise[:5]
    quality = stats.quality(notes=("target exited",))
    assert quality.unparsed_lines == 8 and quality.notes[-1] == "target exited"


def test_pasted_output_without_header_or_tabs_reads_as_the_block_it_came_from() -> None:
    """memleak -a output as pasted into tickets: no `[HH:MM:SS] Top N` header, leading tabs lost,
    the tab before each symbol turned into spaces (derived from the last block of
    bcc-0.26-periodic-a.txt). It is one snapshot equal to that block, and says it had no header."""
    stats = ParseStats()
    (pasted,) = parse_memleak(lines("bcc-0.26-periodic-a-pasted.txt"), stats)
    original = list(parse_memleak(lines("bcc-0.26-periodic-a.txt")))[-1]
    assert stats.unparsed == 0
    assert any("no '[HH:MM:SS] Top N stacks' header" in note for note in stats.notes)
    assert pasted.clock is None and pasted.t == 0.0
    assert pasted.stacks == original.stacks
    assert pasted.addresses == original.addresses and len(pasted.addresses) == 167
    assert pasted.stacks[0].stack.frames[0] == Frame("work", 0xFA, "trace_leaker", 0x55E2374BD411)


def test_pasted_lines_from_the_issue() -> None:
    stats = ParseStats()
    text = [
        "addr = 560cdc84a080 size = 29",
        "30 bytes in 1 allocations from stack",
        "0x00007fc75f6a33ef      __strdup+0x1f [libc.so.6]",
        "0x0000560cdb2e71c2      main+0x21 [prog]",
    ]
    (snap,) = parse_memleak(text, stats)
    assert stats.unparsed == 0
    (only,) = snap.stacks
    assert (only.outstanding_bytes, only.count) == (30, 1)
    assert [f.symbol for f in only.stack.frames] == ["__strdup", "main"]
    assert snap.addresses == ((0x560CDC84A080, 29),)


def test_prose_around_a_paste_is_not_read_as_frames() -> None:
    stats = ParseStats()
    text = [
        "Here is what memleak said:",
        "30 bytes in 1 allocations from stack",
        "main+0x21 [prog]",
        "Thanks!",
    ]
    (snap,) = parse_memleak(text, stats)
    assert [f.symbol for f in snap.stacks[0].stack.frames] == ["main"]
    assert stats.unparsed == 2


# --- stopped while printing a snapshot ------------------------------------------------------------


def test_a_block_cut_by_sigint_is_left_out_not_read_as_all_freed() -> None:
    """memleak prints a block between two sleeps; a SIGINT then (not during the sleep, which exits
    quietly) cuts it short with a KeyboardInterrupt traceback through print_outstanding. The stacks
    not printed yet would read as freed: a leak's last point at 0, judged "transient"."""
    lines = (FIXTURES / "bcc-0.26-periodic-a-nofp.txt").read_text().splitlines()
    stats = ParseStats()
    snaps = list(parse_memleak(lines, stats))
    assert len(snaps) == 1  # the second block, cut while its addresses were printed, is left out
    assert STOPPED_WHILE_PRINTING in stats.notes and not any("crashed" in n for n in stats.notes)
    # a block cut after some of its stacks: the same (derived from the periodic capture)
    cpp = (FIXTURES / "bcc-0.26-periodic-cpp.txt").read_text().splitlines()
    second = next(i for i, line in enumerate(cpp) if line.startswith("[09:07:40]"))
    traceback = [line for line in lines if line.startswith(("Traceback", " ", "KeyboardInterrupt"))]
    stats = ParseStats()
    snaps = list(parse_memleak([*cpp[: second + 5], *traceback], stats))
    assert [len(s.stacks) for s in snaps] == [4] and STOPPED_WHILE_PRINTING in stats.notes


def test_stopped_while_printing_reads_the_traceback_on_stderr() -> None:
    """The live runs read memleak's stderr apart: the job leaves the last block out on this."""
    nofp = (FIXTURES / "bcc-0.26-periodic-a-nofp.txt").read_text()
    assert stopped_while_printing(nofp[nofp.index("Traceback") :])
    trace = (FIXTURES / "bcc-0.26-trace.txt").read_text()  # stopped in its trace loop: not printing
    assert not stopped_while_printing(trace[trace.index("Traceback") :])
    assert not stopped_while_printing("")
    assert not stopped_while_printing("  File x, in print_outstanding\nValueError: broken pipe\n")
