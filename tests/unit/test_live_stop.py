"""run_live's stop when a tool says its data is complete before it exits (probe.live._Live).

The tools are real processes (sh) printing bpftrace's -f json protocol as bpftrace 0.17 printed it
for investigate.bt.j2 (captured with many_stacks, see scripts/bench_long_runs.py) and, like it,
taking seconds to exit after SIGINT.
"""

from __future__ import annotations

import shlex
import time
from typing import cast

from leakhunt.model import BackendInfo
from leakhunt.probe import bpftrace, runner
from leakhunt.probe.backend import Backend, ProbeCommand
from leakhunt.probe.live import LiveJob, LivePolicy, _Live

STACK = '"\\n\\t55d2bf0bf22d leaf_0+13 (/t/many_stacks)\\n\\t55d2bf0bf4b5 main+24 (/t/many_stacks)\\n"'


def block(clock: str, n: int) -> list[str]:
    return [
        '{"type": "time", "data": "' + clock + '\\n"}',
        '{"type": "map", "data": {"@bytes": {' + STACK + ": " + str(64 * n) + "}}}",
        '{"type": "map", "data": {"@count": {' + STACK + ": " + str(n) + "}}}",
        '{"type": "map", "data": {"@live": ' + str(n) + "}}",
        '{"type": "map", "data": {"@allocs": ' + str(n) + "}}",
        '{"type": "map", "data": {"@frees": 0}}',
    ]


class Job:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.lines: list[str] = []

    def feed(self, line: str) -> None:
        self.lines.append(line)


def live(job: Job, grace: float = 8.0) -> _Live:
    return _Live(cast(Backend, None), cast(LiveJob, job), LivePolicy(stop_grace=grace))


def command(**signs: object) -> ProbeCommand:
    info = BackendInfo(name="bpftrace", tool="sh", version="0", argv=())
    return ProbeCommand(info=info, argv=(), env=(), attached=lambda line, err, pid: True, **signs)  # type: ignore[arg-type]


BPFTRACE_SIGNS = {
    "block_start": bpftrace.starts_snapshot,
    "block_end": bpftrace.ends_snapshot,
    "cleanup_follows": bpftrace.is_end,
}


def test_each_snapshot_is_fed_whole_and_a_half_printed_one_never() -> None:
    job = Job()
    run = live(job)
    run.cmd = command(**BPFTRACE_SIGNS)
    first, second = block("10:00:01", 1), block("10:00:02", 2)
    for line in ['{"type": "printf", "data": "leakhunt: probing pid 1, interval 1000 ms\\n"}', *first]:
        run._feed(line)
    assert job.lines[1:] == first  # status lines at once, a snapshot at its last line
    for line in second[:3]:
        run._feed(line)
    assert job.lines[1:] == first and run.in_block  # held until its @frees line
    run._feed(second[0].replace("10:00:02", "10:00:03"))  # a block without its end: fed as it was
    assert job.lines[1:] == first + second[:3]


def tool(script: str) -> runner.Child:
    return runner.Child(["sh", "-c", script], name="bpftrace")


def test_the_stop_does_not_wait_for_a_tool_that_prints_nothing_on_sigint() -> None:
    # prints two snapshots and half a third, then, on SIGINT, detaches (sleeps) and runs END
    printed = "\n".join([*block("10:00:01", 1), *block("10:00:02", 2), *block("10:00:03", 3)[:2]])
    end = '{"type": "printf", "data": "leakhunt: end\\n"}'
    script = (
        f"stop() {{ sleep 5; printf '%s\\n' {shlex.quote(end)}; sleep 30; }}; trap stop INT; "
        f"printf '%s\\n' {shlex.quote(printed)}; while :; do sleep 0.05; done"
    )
    job = Job()
    run = live(job)
    run.cmd = command(**BPFTRACE_SIGNS)
    probe = tool(script)
    try:
        assert runner.wait_until(lambda: probe._lines.qsize() >= 14, timeout=10)
        asked = time.monotonic()
        assert run._stop_for_data(probe, run.cmd) is None  # complete: the tool still exits
        assert probe.alive()  # returned while it "detaches"
        assert time.monotonic() - asked < 4
        assert job.lines == [*block("10:00:01", 1), *block("10:00:02", 2)]
        assert job.notes == [
            "the snapshot bpftrace was printing when it was stopped is left out (incomplete)"
        ]
        exit_ = run._reap(probe, run.cmd)  # killed at END's line, not after its 30 s of cleanup
        assert time.monotonic() - asked < 20  # not the 35 s it would take
        assert run.killed_in_cleanup and not probe.alive() and exit_.returncode == -9
        assert end not in job.lines
    finally:
        probe.stop(grace=0.0)


def test_a_tool_that_prints_a_last_snapshot_is_read_until_it_says_so() -> None:
    # the native host: on SIGINT a last snapshot, its stop line, then seconds of detaching
    script = (
        "trap 'echo T 1; echo E; echo \"leakhunt-native: stopped\"; sleep 4; exit 0' INT; "
        "echo T 0; echo E; while :; do sleep 0.05; done"
    )
    job = Job()
    run = live(job)
    run.cmd = command(data_done=lambda line: line == "leakhunt-native: stopped")
    probe = tool(script)
    try:
        assert runner.wait_until(lambda: probe._lines.qsize() >= 2, timeout=10)
        assert run._stop_for_data(probe, run.cmd) is None
        assert probe.alive()  # returned while it "detaches"
        assert job.lines == ["T 0", "E", "T 1", "E", "leakhunt-native: stopped"]
        assert run._reap(probe, run.cmd).returncode == 0  # it exits on its own, not killed
        assert not run.killed_in_cleanup
    finally:
        probe.stop(grace=0.0)


def test_without_signs_the_tool_is_waited_for() -> None:
    job = Job()
    run = live(job, grace=5.0)
    run.cmd = command()
    probe = tool("trap 'echo last; exit 0' INT; echo first; while :; do sleep 0.05; done")
    try:
        assert runner.wait_until(lambda: probe._lines.qsize() >= 1, timeout=10)
        exit_ = run._stop_for_data(probe, run.cmd)
        assert exit_ is not None and exit_.returncode == 0 and not probe.alive()
        assert job.lines == ["first", "last"]
    finally:
        probe.stop(grace=0.0)
