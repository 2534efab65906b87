"""uprobe events in tracefs: parsing (pure), and finding and removing the ones BCC left (real tracefs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from leakhunt.probe import live, runner, tracefs
from tests.integration._probecli import run_leakhunt

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
SAMPLE = [
    f"p:uprobes/p__lib_x86_64_linux_gnu_libc_so_6_0x9a0d0_bcc_41833 {LIBC}:0x000000000009a0d0",
    f"r:uprobes/r__lib_x86_64_linux_gnu_libc_so_6_0x9a0d0_bcc_41833 {LIBC}:0x000000000009a0d0",
    f"p:probe_libc/malloc {LIBC}:0x000000000009a0d0",  # perf probe's: no owner
    "garbage line",
    "",
]


def test_parse_events_and_their_bcc_owners() -> None:
    events = tracefs.parse_uprobe_events(SAMPLE)
    assert [(e.kind, e.group, e.owner_pid) for e in events] == [
        ("p", "uprobes", 41833),
        ("r", "uprobes", 41833),
        ("p", "probe_libc", None),
    ]
    assert events[0].removal == "-:uprobes/p__lib_x86_64_linux_gnu_libc_so_6_0x9a0d0_bcc_41833"
    assert events[0].location == f"{LIBC}:0x000000000009a0d0"
    stale = tracefs.stale_events(events, alive=lambda pid: False)
    assert [e.owner_pid for e in stale] == [41833, 41833]  # the perf probe is never ours to judge
    assert tracefs.stale_events(events, alive=lambda pid: True) == []
    command = tracefs.removal_command(stale)
    assert command.startswith("printf '%s\\n' -:uprobes/p__lib") and command.endswith("uprobe_events")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant(owner: int, offset: int = 0x1000) -> tracefs.UprobeEvent:
    """A real (never enabled) uprobe event in tracefs named as BCC names its own."""
    path = tracefs.events_file()
    assert path is not None
    name = f"p__lib_x86_64_linux_gnu_libc_so_6_0x{offset:x}_bcc_{owner}"
    # os.open, not open(path, "a"): Python's append mode seeks, which tracefs refuses (EINVAL)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"p:uprobes/{name} {LIBC}:0x{offset:x}\n".encode())
    finally:
        os.close(fd)
    (event,) = [e for e in tracefs.read_events() if e.name == name]
    return event


@pytest.fixture
def planted() -> Iterator[list[tracefs.UprobeEvent]]:
    made: list[tracefs.UprobeEvent] = []
    yield made
    tracefs.remove_events(made)


@pytest.mark.probe
def test_doctor_lists_stale_events_with_the_command_that_removes_them(
    probe_env: None, planted: list[tracefs.UprobeEvent]
) -> None:
    owner = _dead_pid()
    planted.append(_plant(owner))
    code, out, err = run_leakhunt(["doctor"])
    assert code == 0, out + err  # a warning: probing still works
    assert f"FAIL stale uprobe events: 1 left by BCC process(es) {owner} that are gone" in out
    fix = next(
        line.split("fix: ", 1)[1] for line in out.splitlines() if "uprobe_events" in line and "fix:" in line
    )
    subprocess.run(["sh", "-c", fix], check=True)
    assert not [e for e in tracefs.read_events() if e.owner_pid == owner]
    code, out, _ = run_leakhunt(["doctor"])
    assert "ok   stale uprobe events" in out


@pytest.mark.probe
def test_leakhunt_removes_what_its_own_probe_left(
    probe_env: None, planted: list[tracefs.UprobeEvent]
) -> None:
    """Whatever way a probe process ended, the events named after its pid go with it."""
    probe = runner.Child(["sleep", "30"], name="fake-bcc")
    planted.append(_plant(probe.pid))
    other = _plant(_dead_pid(), 0x1010)  # not ours: left for doctor to report
    planted.append(other)
    live.stop_leftovers((probe,), None)
    names = {e.name for e in tracefs.read_events()}
    assert planted[0].name not in names
    assert other.name in names
