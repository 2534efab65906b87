"""The native probe's output (leakhunt.parse.native): snapshots, counters, sampling uncertainty."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.parse import ParseStats
from leakhunt.parse.native import NativeParser, parse_native

BLOCK = """leakhunt-native: compiled
leakhunt-native: attached 17 probes
T 12:00:05 5.002
S 4096 4 4 0 2
F 0x000055d0c0a1b18b leaky_alloc+0x12 [leak_mix]
F 0x000055d0c0a1b1c2 main+0x21 [leak_mix]
S 100 1 1 0 0
C calls=10 allocs=9 frees=5 blocks_full=0 stack_lost=1 aggs_full=0 inflight_full=0 tracked=5
E
T 12:00:10 10.001
S 8192 8 8 0 2
F 0x000055d0c0a1b18b leaky_alloc+0x12 [leak_mix]
F 0x000055d0c0a1b1c2 main+0x21 [leak_mix]
S 512 1 1 0 2
F 0x000055d0c0a1b18b leaky_alloc+0x12 [leak_mix]
F 0x000055d0c0a1b1c2 main+0x21 [leak_mix]
C calls=20 allocs=19 frees=10 blocks_full=3 stack_lost=1 aggs_full=0 inflight_full=2 tracked=9
E
"""


def test_snapshots_frames_and_counters() -> None:
    stats = ParseStats()
    snaps = list(parse_native(BLOCK.splitlines(), stats))
    assert [s.t for s in snaps] == [5.002, 10.001]
    assert snaps[0].clock == "12:00:05"
    first = {s.stack.key: (s.outstanding_bytes, s.count) for s in snaps[0].stacks}
    assert first == {"leaky_alloc+0x12 [leak_mix];main+0x21 [leak_mix]": (4096, 4), "[no stack]": (100, 1)}
    frame = snaps[0].stacks[0].stack.frames[0]
    assert (frame.symbol, frame.offset, frame.module, frame.address) == (
        "leaky_alloc",
        0x12,
        "leak_mix",
        0x55D0C0A1B18B,
    )
    # two rows with the same frames add up (threads that exited leave equal stacks apart)
    (only,) = snaps[1].stacks
    assert (only.outstanding_bytes, only.count) == (8704, 9)
    assert stats.unparsed == 0
    quality = stats.quality()
    assert quality.map_full and quality.dropped_stacks == 1 and quality.lost_events == 2
    assert any("3 allocations were not tracked" in n for n in quality.notes)
    assert (stats.allocations_seen, stats.frees_seen) == (19, 10)


def test_a_snapshot_cut_off_before_its_end_is_dropped() -> None:
    stats = ParseStats()
    text = BLOCK.split("T 12:00:10", maxsplit=1)[0] + "T 12:00:10 10.0\nS 1 1 1 0 0\n"
    snaps = list(parse_native(text.splitlines(), stats))
    assert len(snaps) == 1
    assert any("cut off" in n for n in stats.notes)


def test_sampled_estimates_carry_their_uncertainty() -> None:
    stats = ParseStats()
    parser = NativeParser(stats, sample_bytes=65536)
    lines = [
        "T 12:00:05 5.0",
        "S 1310720 20 20 6400 1",  # 20 samples of ~64 KiB: variance 6400 (512 B)^2 -> sd 40 KiB
        "F 0x0000000000401000 leaky_alloc+0x12 [leak_mix]",
        "C calls=1000 allocs=20 frees=0",
        "E",
    ]
    snaps = [s for line in lines if (s := parser.feed(line)) is not None]
    parser.finish()
    assert snaps[0].stacks[0].outstanding_bytes == 1310720
    (u,) = parser.uncertainty
    assert (u.estimate, round(u.stddev), u.tracked) == (1310720, 40960, 20)
    assert any("1310720 B ± 40960 B" in n for n in stats.notes)


def test_garbage_is_counted_not_raised() -> None:
    stats = ParseStats()
    lines = ["S 1 1 1 0 0", "E", "T nonsense", "F 0x1 x", "random text", "C what", "T 12:00:01 1.0", "S x"]
    assert list(parse_native(lines, stats)) == []
    assert stats.unparsed == 7


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(BLOCK.splitlines())), max_size=60))
def test_arbitrary_input_never_raises(lines: list[str]) -> None:
    for snap in parse_native(lines, ParseStats()):
        assert all(s.outstanding_bytes > 0 or (s.count or 0) > 0 for s in snap.stacks)


DWARF = """T 12:00:05 5.002
R 3735928559 0x55d0c0a1b18b 0x7ffd6c204e10 0x1 8bb1a1c0d055000000000000
S 4096 4 4 0 0
U 3735928559
S 100 1 1 0 0
C calls=10 allocs=9 frees=5
E
T 12:00:10 10.001
S 8192 8 8 0 0
U 3735928559
U 12
E
"""


def test_dwarf_mode_keys_and_stack_copies() -> None:
    """--unwind dwarf: a stack is a key to unwind; its registers and copy come once, before it."""
    stats = ParseStats()
    parser = NativeParser(stats)
    snaps = [s for line in DWARF.splitlines() if (s := parser.feed(line)) is not None]
    last = parser.finish()
    assert last is None and len(snaps) == 2
    first = snaps[0].stacks[0].stack.frames
    assert [(f.symbol, f.address) for f in first] == [("[stack to unwind]", 3735928559)]
    raw = parser.raw[3735928559]
    assert (raw.ip, raw.sp, raw.bp) == (0x55D0C0A1B18B, 0x7FFD6C204E10, 1)
    assert raw.data == bytes.fromhex("8bb1a1c0d055000000000000")
    assert snaps[1].stacks[0].stack.frames == first
    assert stats.unparsed == 1  # "U 12": a second key for one stack


def test_dwarf_mode_bad_lines_are_counted() -> None:
    stats = ParseStats()
    bad = ["T 12:00:05 5.002", "R 1 0xzz 0x1 0x1 00", "S 1 1 1 0 0", "U x", "U 5", "U 6", "E"]
    snaps = list(parse_native(bad, stats))
    assert stats.unparsed == 3  # the bad R, "U x", and a second U for one stack
    assert [f.address for f in snaps[0].stacks[0].stack.frames] == [5]


def test_captured_output_of_a_cpp_target() -> None:
    """tests/fixtures/native-bcc-0.26.0-cpp.txt (scripts/capture_native_fixture.py): cpp_leaker adds
    100 entries of 1 KiB every 100 ms through operator new and never removes them."""
    path = Path(__file__).resolve().parent.parent / "fixtures" / "native-bcc-0.26.0-cpp.txt"
    stats = ParseStats()
    snaps = list(parse_native(path.read_text().splitlines(), stats))
    assert len(snaps) == 5  # four intervals and the one printed on SIGINT
    assert stats.unparsed == 0
    # the registry's stack (g++ shrink-wrapping drops Registry::add from it: see FORMATS.md) grows
    growth = [max(s.outstanding_bytes for s in snap.stacks) for snap in snaps]
    assert growth == sorted(growth) and growth[-1] > growth[0]
    biggest = max(snaps[-1].stacks, key=lambda s: s.outstanding_bytes)
    assert biggest.stack.frames[0].symbol == "operator new(unsigned long)"
    assert biggest.stack.frames[1].symbol == "main" and biggest.count == biggest.outstanding_bytes // 1024
    frames = {f.symbol for s in snaps[-1].stacks for f in s.stack.frames}
    assert any(" " in name and "(" in name for name in frames)  # demangled, with spaces
    assert (stats.allocations_seen or 0) >= 4000 and stats.frees_seen == 0  # the probe's own counters


def test_the_hosts_stop_line_is_the_one_leakhunt_waits_for() -> None:
    """run_live takes the data as complete at this line (the host prints it after its last snapshot)."""
    from leakhunt.parse.native import STATUS_PREFIX  # noqa: PLC0415
    from leakhunt.probe import native, native_host  # noqa: PLC0415

    assert native_host.STOPPED == native.HOST_STOPPED
    assert native.HOST_STOPPED.startswith(STATUS_PREFIX)  # the backend's chatter, not data
    source = Path(native_host.__file__).read_text()
    # printed after the last snapshot, before the process exits (and BCC detaches)
    assert source.index("    host.snapshot()\n    # leakhunt") < source.index("_say(STOPPED)")


def test_the_hosts_exit_line_marks_the_exit_in_the_window() -> None:
    """The host says, among its snapshots, when the target has no address space any more; the
    session marks its window there, so a stack freed by the clean-up at exit is judged on the
    snapshots before it, however late leakhunt itself noticed the exit."""
    from leakhunt.app.investigate import _Investigation  # noqa: PLC0415
    from leakhunt.model import BackendInfo  # noqa: PLC0415
    from leakhunt.probe import native, native_host  # noqa: PLC0415
    from leakhunt.probe.backend import ProbeCommand, ProbeOptions  # noqa: PLC0415

    assert native_host.TARGET_EXITED == native.HOST_TARGET_EXITED
    assert native.HOST_TARGET_EXITED.startswith("leakhunt-native: ")

    def lines(exit_line: bool) -> list[str]:
        out = []
        for i in range(6):
            if i == 5 and exit_line:
                out.append(native.HOST_TARGET_EXITED)
            held = 0 if i == 5 else (i + 1) * 100_000
            out += [f"T 12:00:{i:02d} {i + 1}.000", f"S {held} {held // 1000} {held // 1000} 0 1"]
            out += ["F 0x000055d0c0a1b18b grow+0x12 [prog]", "C calls=1 allocs=1 frees=0", "E"]
        return out

    verdicts = []
    for exit_line in (True, False):
        job = _Investigation(ProbeOptions(backend="native"), None)
        job.parser = native._parser(job.stats, sample_bytes=0)
        job.cmd = ProbeCommand(
            info=BackendInfo(name="native", tool="", version="", argv=()),
            argv=(),
            env=(),
            attached=lambda line, err, pid: True,
            is_chatter=lambda line: line.startswith("leakhunt-native: "),
            target_exited=lambda line: line == native.HOST_TARGET_EXITED,
        )
        if exit_line:
            # leakhunt noticed the exit before reading these snapshots (it lags while it unwinds
            # thousands of new stacks): the host's line still places the exit
            job.target_gone(0.0)
        for line in lines(exit_line):
            job.feed(line)
        (finding,) = job.window.findings()
        verdicts.append((finding.verdict, finding.outstanding_bytes))
    # without the line (and leakhunt not knowing yet), the fall to 0 looks like a transient
    assert verdicts[0] == ("leak", 500_000)
    assert verdicts[1][0] != "leak"
