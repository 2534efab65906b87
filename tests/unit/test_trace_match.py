"""Address matching of per-call traces: what a user reads in the trace report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import leakhunt.analyze.trace as trace_analysis
from leakhunt.analyze.trace import TraceMatcher, group_by_size, group_by_thread
from leakhunt.app.tracefeed import replay
from leakhunt.model import BackendInfo, RunInfo, Target, TraceEvent, TraceProcess, TraceResult, Unfreed
from leakhunt.parse import ParseStats
from leakhunt.report import views

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def expected(name: str) -> tuple[set[tuple[int, int, int]], int, int]:
    leaks = set()
    count = total = -1
    for line in (FIXTURES / name).read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["leak"]:
            leaks.add((int(parts[1], 16), int(parts[2]), int(parts[3])))
        elif parts[:1] == ["leaked"]:
            count, total = int(parts[1]), int(parts[2])
    return leaks, count, total


def test_captured_memleak_trace_with_thread_notes_is_one_process_with_exactly_the_leaks() -> None:
    leaks, count, total = expected("bcc-0.26-trace.expected")
    tids = sorted({tid for _, _, tid in leaks})
    main = min(tids)
    # what `leakhunt trace --save-raw` writes before memleak's lines: each thread's process
    notes = [f"leakhunt: target pid {main} comm trace_leaker"] + [
        f"leakhunt: tid {t} pid {main}" for t in tids
    ]
    with open(FIXTURES / "bcc-0.26-trace.txt") as fh:
        summary = replay([*notes, *fh])
    assert [p.pid for p in summary.processes] == [main]
    proc = summary.processes[0]
    assert (proc.unfreed_count, proc.unfreed_bytes) == (count, total) == (27, 46656)
    assert {(u.address, u.size, u.tid) for u in proc.unfreed} == leaks
    assert proc.alloc_count - proc.free_count == count
    assert proc.unknown_frees == 0  # memleak prints frees of blocks it saw allocated only


def test_without_thread_notes_threads_stay_apart_until_they_free_each_others_blocks() -> None:
    summary = replay((FIXTURES / "bcc-0.26-trace.txt").read_text().splitlines())
    # trace_leaker's threads never free each other's blocks: nothing ties them together
    assert len(summary.processes) == 3 and summary.merged_threads == 0
    m = TraceMatcher()
    m.alloc(1.0, 100, 100, "app", 0x1000, 10, pid_known=False)
    m.alloc(1.1, 101, 101, "app", 0x2000, 20, pid_known=False)
    m.free(1.2, 101, 101, "app", 0x1000, pid_known=False)  # thread 101 frees 100's block
    s = m.summary()
    assert [(p.pid, p.alloc_count, p.free_count, p.unknown_frees) for p in s.processes] == [(100, 2, 1, 0)]
    assert s.processes[0].unfreed == (Unfreed(0x2000, 20, 101, 1.1),)
    assert s.merged_threads == 1


def test_known_processes_are_never_merged_and_addresses_are_per_process() -> None:
    m = TraceMatcher()
    m.alloc(1.0, 1, 1, "a", 0x1000, 10)
    m.alloc(1.0, 2, 2, "b", 0x1000, 99)  # the same address in another process
    m.free(2.0, 2, 3, "b", 0x1000)  # thread 3 of process 2
    m.free(2.0, 2, 3, "b", 0x5000)  # allocated before the trace started
    s = m.summary()
    by_pid = {p.pid: p for p in s.processes}
    assert by_pid[1].unfreed == (Unfreed(0x1000, 10, 1, 1.0),)
    assert by_pid[2].unfreed == () and by_pid[2].unknown_frees == 1 and by_pid[2].free_count == 1


def test_realloc_is_a_free_and_an_allocation() -> None:
    lines = [
        "A 1000000000 7 7 1000 24 app",
        "F 1100000000 7 7 1000 app",  # realloc(0x1000, 4000): the old block is released...
        "A 1100000001 7 7 2000 4000 app",  # ...and the new one allocated
        "F 1200000000 7 8 9000 app",  # a block from before the trace
    ]
    s = replay(lines)
    (proc,) = s.processes
    assert (proc.alloc_count, proc.free_count, proc.unknown_frees) == (2, 1, 1)
    assert proc.unfreed == (Unfreed(0x2000, 4000, 7, 1.100000001),)


def test_lost_free_is_counted_when_an_address_comes_back() -> None:
    m = TraceMatcher()
    m.alloc(1.0, 1, 1, "a", 0x10, 8)
    m.alloc(2.0, 1, 1, "a", 0x10, 16)  # its free was lost
    s = m.summary()
    assert s.missed_frees == 1 and s.processes[0].unfreed == (Unfreed(0x10, 16, 1, 2.0),)


def test_older_than_keeps_blocks_older_than_the_threshold_at_the_end() -> None:
    m = TraceMatcher()
    m.alloc(10.0, 1, 1, "a", 0x10, 8)
    m.alloc(10.9, 1, 1, "a", 0x20, 8)
    m.free(11.0, 1, 1, "a", 0x30)
    assert [u.address for u in m.summary(older_than_s=0.5).processes[0].unfreed] == [0x10]
    # ages run to the end of the trace when it is known
    assert [u.address for u in m.summary(older_than_s=0.5, end_time=20.0).processes[0].unfreed] == [
        0x10,
        0x20,
    ]


def test_groups_by_size_and_by_thread() -> None:
    unfreed = [Unfreed(1, 64, 10, 1.0), Unfreed(2, 64, 11, 2.0), Unfreed(3, 4000, 11, 3.0)]
    by_size = group_by_size(unfreed)
    assert [(g.key, g.count, g.bytes, g.oldest, g.newest) for g in by_size] == [
        (4000, 1, 4000, 3.0, 3.0),
        (64, 2, 128, 1.0, 2.0),
    ]
    by_thread = group_by_thread(unfreed)
    assert [(g.key, g.count, g.bytes) for g in by_thread] == [(11, 2, 4064), (10, 1, 64)]


UNFREED = st.builds(
    Unfreed,
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 16, 64, 4000, 2**62]),
    st.sampled_from([10, 11, 12]),
    st.floats(0, 1e6, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(UNFREED, max_size=40), max_size=3), st.floats(0, 2e6, allow_nan=False))
def test_report_groups_and_largest_blocks_are_what_the_plain_definitions_give(
    procs: list[list[Unfreed]], end: float
) -> None:
    tr = TraceResult(
        target=Target(pid=1, comm="app", cmdline=()),
        backend=BackendInfo(name="bcc", tool="import", version="", argv=(), reason=""),
        run=RunInfo(started_at="", duration_s=0.0, stop_reason="imported"),
        processes=tuple(TraceProcess(i, "app", 0, 0, 0, tuple(us)) for i, us in enumerate(procs)),
        end_time=end,
    )
    every = [u for us in procs for u in us]
    for got, key in zip(views.unfreed_groups(tr), ("size", "tid"), strict=True):
        acc: dict[int, list[Unfreed]] = {}
        for u in every:
            acc.setdefault(getattr(u, key), []).append(u)
        want = sorted(
            (
                views.UnfreedGroup(k, len(us), sum(u.size for u in us), max(end - u.time for u in us))
                for k, us in acc.items()
            ),
            key=lambda g: (-g.total_bytes, -g.count, g.key),
        )
        assert list(got) == want
    for n in (0, 1, 5, 500):
        assert views.largest_unfreed(tr, n) == sorted(every, key=lambda u: (-u.size, u.time))[:n]


def test_rate_over_time_and_coarser_buckets_for_long_traces() -> None:
    m = TraceMatcher(bucket_s=1.0)
    for i in range(10):
        m.alloc(100.0 + i * 0.5, 1, 1, "a", 0x1000 + i, 10)
    m.alloc(104.9, 1, 1, "a", 0x9999, 1000)
    assert m.summary().rate == ((0.0, 2, 20), (1.0, 2, 20), (2.0, 2, 20), (3.0, 2, 20), (4.0, 3, 1020))
    long = TraceMatcher(bucket_s=1.0)
    for i in range(1000):
        long.alloc(float(i), 1, 1, "a", i + 1, 1)
    rate = long.summary().rate
    assert len(rate) <= 240 and sum(n for _, n, _ in rate) == 1000
    assert rate[1][0] - rate[0][0] == 5.0  # 1000 s in 5 s buckets


def test_trace_events_api() -> None:
    m = TraceMatcher()
    m.add(TraceEvent(1.0, 5, 6, "x", "alloc", 0x10, 3))
    m.add(TraceEvent(2.0, 5, 5, "x", "free", 0x10, None))
    (proc,) = m.summary().processes
    assert (proc.pid, proc.alloc_count, proc.free_count, proc.unfreed) == (5, 1, 1, ())


_OPS = st.lists(
    st.tuples(st.sampled_from(["alloc", "free"]), st.integers(1, 3), st.integers(0, 15), st.integers(1, 100)),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_matcher_agrees_with_a_plain_model(ops: list[tuple[str, int, int, int]]) -> None:
    """Per process: a dict of outstanding blocks; frees of unknown addresses counted apart."""
    m = TraceMatcher()
    model: dict[int, dict[int, int]] = {}
    unknown: dict[int, int] = {}
    for i, (kind, pid, slot, size) in enumerate(ops):
        address = 0x1000 + slot * 16
        if kind == "alloc":
            m.alloc(float(i), pid, pid, "p", address, size)
            model.setdefault(pid, {})[address] = size
        else:
            m.free(float(i), pid, pid, "p", address)
            if model.setdefault(pid, {}).pop(address, None) is None:
                unknown[pid] = unknown.get(pid, 0) + 1
    s = m.summary()
    got = {p.pid: {u.address: u.size for u in p.unfreed} for p in s.processes}
    assert got == {pid: blocks for pid, blocks in model.items()}
    assert {p.pid: p.unknown_frees for p in s.processes if p.unknown_frees} == unknown


@settings(max_examples=200, deadline=None)
@given(_OPS, st.sampled_from([0.0, 2.0, 5.0]), st.booleans())
def test_unfreed_blocks_come_by_time_then_in_the_order_a_dict_keeps(
    ops: list[tuple[str, int, int, int]], older_than: float, huge: bool
) -> None:
    """Times repeat (three events a second); a block allocated again at its address keeps its
    place. ``huge``: one block's size is beyond 64 bits, so the blocks are not arrays."""
    m = TraceMatcher()
    model: dict[int, dict[int, tuple[int, float]]] = {}
    end = 0.0  # the last event's time
    for i, (kind, pid, slot, size) in enumerate(ops):
        address, t = 0x1000 + slot * 16, float(i // 3)
        if kind == "alloc":
            end = t
            m.alloc(t, pid, pid, "p", address, size)
            model.setdefault(pid, {})[address] = (size, t)
        elif address in model.get(pid, {}):  # (a free of no block may cancel a later allocation)
            end = t
            m.free(t, pid, pid, "p", address)
            del model[pid][address]
    if huge:
        m.alloc(0.0, 1, 1, "p", 0x10, 1 << 70)
        model.setdefault(1, {})[0x10] = (1 << 70, 0.0)
    s = m.summary(older_than_s=older_than)
    want = {
        pid: [
            (a, size, t)
            for a, (size, t) in sorted(blocks.items(), key=lambda kv: kv[1][1])
            if end - t >= older_than
        ]
        for pid, blocks in model.items()
    }
    got = {p.pid: [(u.address, u.size, u.time) for u in p.unfreed] for p in s.processes}
    assert got == {pid: want[pid] for pid in got}
    assert all(pid in got for pid, blocks in want.items() if blocks)


def test_stats_count_lines_of_a_replay() -> None:
    stats = ParseStats()
    replay(["junk", "A 1 1 1 10 5 a"], stats)
    assert stats.lines == 2 and stats.unparsed == 1


def test_a_free_printed_before_its_allocation_still_matches() -> None:
    """bpftrace drains per-CPU buffers in turn: a thread that changed CPU can have its free printed
    before its malloc. Timestamps tell: the free is not older than the allocation."""
    lines = [
        "F 2000000500 9 9 abc0 app",  # free at t=2.0000005 printed first...
        "A 2000000100 9 9 abc0 32 app",  # ...of the block allocated at t=2.0000001
        "F 2000000900 9 9 def0 app",  # a free of a block from before the trace
        "A 2000001000 9 9 def0 64 app",  # the address reused afterwards: a new, live block
    ]
    s = replay(lines)
    (proc,) = s.processes
    assert (proc.alloc_count, proc.free_count, proc.unknown_frees) == (2, 1, 1)
    assert proc.unfreed == (Unfreed(0xDEF0, 64, 9, 2.000001),)
    assert s.rate[0][0] <= 0.0 and sum(n for _, n, _ in s.rate) == 2


def test_two_memleak_tracers_at_once_the_first_is_exact_the_second_crashes() -> None:
    """Captured: two `memleak -t` on two targets. The kernel's trace_pipe takes one reader."""
    leaks, count, total = expected("bcc-0.26-trace-two-a.expected")
    first = replay((FIXTURES / "bcc-0.26-trace-two-a.txt").read_text().splitlines())
    got = {(u.address, u.size, u.tid) for p in first.processes for u in p.unfreed}
    assert got == leaks and len(got) == count == 18
    assert sum(p.unfreed_bytes for p in first.processes) == total
    stats = ParseStats()
    second = replay((FIXTURES / "bcc-0.26-trace-two-b.txt").read_text().splitlines(), stats)
    assert second.events == 0 and stats.unparsed == 0
    assert any("crashed" in n and "Device or resource busy" in n for n in stats.notes)


def test_captured_bpftrace_trace_replays_to_exactly_what_the_target_leaked() -> None:
    leaks, count, total = expected("bpftrace-0.17-trace.expected")
    stats = ParseStats()
    summary = replay((FIXTURES / "bpftrace-0.17-trace.txt").read_text().splitlines(), stats)
    (proc,) = summary.processes  # bpftrace prints the process id: one process, three threads
    assert {(u.address, u.size, u.tid) for u in proc.unfreed} == leaks
    assert (proc.unfreed_count, proc.unfreed_bytes) == (count, total) == (27, 46656)
    assert stats.unparsed == 0 and stats.notes == []  # its status lines are expected, not news


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 40), st.integers(0x55D0C0A00000, 0x55D0C0A00100), st.integers(0, 2**64 - 1)),
        max_size=300,
    )
)
def test_the_order_of_addresses_is_numpys_stable_one(values: list[int]) -> None:
    """Repeated addresses keep their order (their events' order); huge ones take the plain path."""
    keys = np.array(values, np.uint64)
    assert trace_analysis._stable_order(keys).tolist() == np.argsort(keys, kind="stable").tolist()
