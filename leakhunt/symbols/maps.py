"""``/proc/PID/maps`` lines -> ``Mapping``: which file backs an address, at which file offset.

A line looks like::

    55d0c2a4b000-55d0c2a4c000 r-xp 00001000 fe:01 1573026    /tmp/leak
    7ffd6c1e5000-7ffd6c206000 rw-p 00000000 00:00 0          [stack]

``parse_maps`` is pure (lines in, mappings out) and skips lines it cannot read; ``read_maps`` is the
one reader of the file here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from leakhunt import procfs


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str  # "" for anonymous memory, "[stack]", "[vdso]", ... for special areas

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def is_file(self) -> bool:
        return self.path.startswith("/")


def parse_maps(lines: Iterable[str] | str) -> tuple[Mapping, ...]:
    """The mappings of /proc/PID/maps lines, by address (``procfs.parse_maps``: unreadable lines
    skipped, `` (deleted)`` dropped from paths)."""
    out = [Mapping(e.start, e.end, e.perms, e.offset, e.path) for e in procfs.parse_maps(lines)]
    out.sort(key=lambda mp: mp.start)
    return tuple(out)


def read_maps(pid: int) -> tuple[Mapping, ...]:
    """The mappings of ``pid`` now; () when the process is gone or unreadable."""
    try:
        return parse_maps(procfs.read_text(pid, "maps"))
    except procfs.ProcError:
        return ()


class AddressSpace:
    """The mappings of one process, searchable by address."""

    def __init__(self, mappings: Iterable[Mapping], root: str = "") -> None:
        self.mappings = tuple(sorted(mappings, key=lambda m: m.start))
        self._starts = [m.start for m in self.mappings]
        self.root = root  # "/proc/PID/root" to open a container's files; "" for the host's

    def find(self, address: int) -> Mapping | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self.mappings[i].start <= address < self.mappings[i].end:
            return self.mappings[i]
        return None

    def file_path(self, mapping: Mapping) -> str:
        return self.root + mapping.path if self.root else mapping.path

    def by_basename(self, name: str) -> Mapping | None:
        """The first file mapping whose base name (or full path) is ``name``."""
        for m in self.mappings:
            if m.is_file and (m.path == name or m.path.rsplit("/", 1)[-1] == name):
                return m
        return None
