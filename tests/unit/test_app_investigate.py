"""Pure helpers of the live session: clock placement, the live-allocation gauge, unresolved stacks."""

from __future__ import annotations

from datetime import datetime

import pytest

from leakhunt.app import investigate as session
from leakhunt.errors import UsageError
from leakhunt.model import Frame, Snapshot, Stack, StackSample
from leakhunt.parse.bpftrace import parse_gauge
from leakhunt.probe.live import target_exit_note


def test_clock_since_start() -> None:
    start = datetime(2026, 11, 25, 9, 0, 0, 500_000)
    assert session._clock_since("09:00:05", start) == 4.5
    assert session._clock_since("[09:00:05]", start) == 4.5
    assert session._clock_since("garbage", start) is None
    assert session._clock_since(None, start) is None
    # a run that crosses midnight
    late = datetime(2026, 11, 25, 23, 59, 58)
    assert session._clock_since("00:00:03", late) == 5.0


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('{"type": "map", "data": {"@live": 123}}', ("live", 123)),
        ('{"type":"map","data":{"@live":"7"}}', ("live", 7)),  # 0.24+: no spaces, big ints as strings
        ("@live: 45", ("live", 45)),
        ('{"type": "map", "data": {"@allocs": 9001}}', ("allocs", 9001)),
        ("@frees: 0", ("frees", 0)),
        ('{"type": "map", "data": {"@bytes": {}}}', None),
        ('{"type": "printf", "data": "@live: 3"}', None),
        ("@allocsx: 3", None),
    ],
)
def test_gauge_lines(line: str, value: tuple[str, int] | None) -> None:
    assert parse_gauge(line) == value


def test_mostly_unresolved() -> None:
    named = Stack((Frame("leaky_alloc", 14, "prog"), Frame("main", 24, "prog")))
    raw = Stack((Frame("0x55b65ab28e89"), Frame("0x7f00aa001234")))
    assert session._mostly_unresolved(Snapshot(0.0, (StackSample(raw, 10),)))
    # half the frames unknown counts as unresolved (a stack printed after the target exited)
    assert session._mostly_unresolved(Snapshot(0.0, (StackSample(named, 10), StackSample(raw, 10))))
    assert not session._mostly_unresolved(Snapshot(0.0, (StackSample(named, 10),)))
    assert not session._mostly_unresolved(Snapshot(0.0, ()))


@pytest.mark.parametrize(
    "options",
    [
        session.ProbeOptions(duration=0),
        session.ProbeOptions(interval=0.01),
        session.ProbeOptions(sample_rate=0),
        session.ProbeOptions(min_size=10, max_size=5),
        session.ProbeOptions(map_keys=10),
    ],
)
def test_bad_options_are_usage_errors(options: session.ProbeOptions) -> None:
    with pytest.raises(UsageError):
        session._check_options(options)


def test_options_as_pairs() -> None:
    pairs = dict(session.ProbeOptions(duration=30, min_size=64, obj="jemalloc").as_pairs())
    assert pairs["duration"] == "30"
    assert pairs["min_size"] == "64"
    assert pairs["obj"] == "jemalloc"
    assert "max_size" not in pairs


def test_target_exit_note_never_contradicts_itself() -> None:
    assert target_exit_note(4.25, 10) == "the target exited after 4.2 s, before the planned 10 s"
    late = target_exit_note(11.5, 10)
    assert "before" not in late and "past the planned 10 s" in late and "11.5 s" in late
