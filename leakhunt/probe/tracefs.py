"""Uprobe events that BCC left in tracefs: find them, and remove the ones leakhunt's probes left.

BCC creates a uprobe through tracefs (when the kernel's uprobe PMU does not serve it, or on its
fallback path) as a named event, one line of ``uprobe_events`` each::

    p:uprobes/p__lib_x86_64_linux_gnu_libc_so_6_0x9a0d0_bcc_41833 /lib/x86_64-linux-gnu/libc.so.6:0x9a0d0
    r:uprobes/r__lib_x86_64_linux_gnu_libc_so_6_0x9a0d0_bcc_41833 /lib/x86_64-linux-gnu/libc.so.6:0x9a0d0

The ``_bcc_PID`` suffix names the BCC process that made it. A BCC process that dies or fails while
attaching (another tool holds a uprobe on the same function: "ref_ctr_offset mismatch") leaves its
events behind; they then clutter tracefs and can make the next attach at that address fail.
Writing ``-:GROUP/NAME`` to ``uprobe_events`` (appending: opening it for writing without append
clears every event on the host) removes one that no live probe uses.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from leakhunt.probe import runner

UPROBE_EVENTS = (Path("/sys/kernel/tracing/uprobe_events"), Path("/sys/kernel/debug/tracing/uprobe_events"))

_LINE = re.compile(
    r"(?P<kind>[pr]):(?P<group>[\w.-]{1,64})/(?P<name>[\w.-]{1,256})\s+(?P<location>\S.{0,4096})"
)
_OWNER = re.compile(r"_bcc_(?P<pid>\d{1,10})$")


@dataclass(frozen=True)
class UprobeEvent:
    kind: str  # "p" (entry) or "r" (return)
    group: str
    name: str
    location: str  # PATH:0xOFFSET as the kernel prints it
    owner_pid: int | None  # the BCC process that created it (its name's _bcc_PID), if any

    @property
    def removal(self) -> str:
        """The line that removes this event when written to uprobe_events."""
        return f"-:{self.group}/{self.name}"


def parse_uprobe_events(lines: Iterable[str]) -> list[UprobeEvent]:
    """The events listed in ``uprobe_events`` text; lines of any other shape are skipped."""
    events = []
    for line in lines:
        m = _LINE.fullmatch(line.strip())
        if m is None:
            continue
        owner = _OWNER.search(m.group("name"))
        events.append(
            UprobeEvent(
                m.group("kind"),
                m.group("group"),
                m.group("name"),
                m.group("location").strip(),
                int(owner.group("pid")) if owner else None,
            )
        )
    return events


def stale_events(events: Iterable[UprobeEvent], alive: Callable[[int], bool]) -> list[UprobeEvent]:
    """Events whose BCC owner process is gone."""
    return [e for e in events if e.owner_pid is not None and not alive(e.owner_pid)]


def events_file() -> Path | None:
    """The ``uprobe_events`` file of the mounted tracefs, or None."""
    return next((p for p in UPROBE_EVENTS if p.exists()), None)


def read_events() -> list[UprobeEvent]:
    """This host's uprobe events (empty when tracefs is not mounted or not readable)."""
    path = events_file()
    if path is None:
        return []
    try:
        return parse_uprobe_events(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return []


def remove_events(events: Iterable[UprobeEvent]) -> list[UprobeEvent]:
    """Remove ``events``; returns those that could not be removed (in use, or no permission)."""
    path = events_file()
    todo = list(events)
    if path is None:
        return todo
    failed = []
    for event in todo:
        try:
            # O_APPEND: a plain write-open of uprobe_events would clear every event on the host
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, (event.removal + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            failed.append(event)
    return failed


def remove_owned_by(pids: Iterable[int]) -> int:
    """Remove the events that the (stopped) BCC processes ``pids`` left; how many were removed."""
    owners = set(pids)
    if not owners:
        return 0
    mine = [e for e in read_events() if e.owner_pid in owners]
    return len(mine) - len(remove_events(mine))


def removal_command(events: Iterable[UprobeEvent]) -> str:
    """A shell command (as root) that removes ``events``."""
    path = events_file() or UPROBE_EVENTS[0]
    lines = " ".join(shlex.quote(e.removal) for e in events)
    return f"printf '%s\\n' {lines} >> {path}"


def find_stale() -> list[UprobeEvent]:
    """Events left on this host by BCC processes that are gone."""
    return stale_events(read_events(), runner.pid_alive)
