"""``/proc/PID/maps`` lines -> ``Mapping``: which file backs an address, at which file offset.

A line looks like::

    55d0c2a4b000-55d0c2a4c000 r-xp 00001000 fe:01 1573026    /tmp/leak
    7ffd6c1e5000-7ffd6c206000 rw-p 00000000 00:00 0          [stack]

``parse_maps`` is pure (lines in, mappings out) and skips lines it cannot read; ``read_maps`` is the
one reader of the file here.
"""

from __future__ import annotations

import bisect
import os
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
    inode: int = 0
    open_as: str = ""  # the path this process opens the file by, when not ``path`` (another root)

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def is_file(self) -> bool:
        return self.path.startswith("/")


def parse_maps(lines: Iterable[str] | str) -> tuple[Mapping, ...]:
    """The mappings of /proc/PID/maps lines, by address (``procfs.parse_maps``: unreadable lines
    skipped, `` (deleted)`` dropped from paths)."""
    out = [Mapping(e.start, e.end, e.perms, e.offset, e.path, e.inode) for e in procfs.parse_maps(lines)]
    out.sort(key=lambda mp: mp.start)
    return tuple(out)


def read_maps(pid: int) -> tuple[Mapping, ...]:
    """The mappings of ``pid`` now; () when the process is gone or unreadable. The files of a
    target in another root (a container, a chroot) carry the path to open them by, found now,
    while /proc/PID/root leads to them."""
    try:
        maps = parse_maps(procfs.read_text(pid, "maps"))
    except procfs.ProcError:
        return ()
    if same_root(pid):
        return maps
    found: dict[tuple[str, int], str] = {}
    out = []
    for m in maps:
        if m.is_file:
            key = (m.path, m.inode)
            if key not in found:
                found[key] = host_path(pid, m.path, m.inode or None)
            out.append(Mapping(m.start, m.end, m.perms, m.offset, m.path, m.inode, found[key]))
        else:
            out.append(m)
    return tuple(out)


def host_path(pid: int | None, path: str, inode: int | None = None) -> str:
    """``path`` as the target names it, as a path this process can open and that the probe tools
    (which resolve paths in the target's mount namespace) accept.

    /proc/PID/maps writes a name relative to *the reader's* root when the file is reachable from
    it (a target in a chroot or ``unshare --root``: the host path /srv/jail/lib/libc.so.6) and
    relative to the target's root otherwise (a container: /lib/libc.so.6). Both become
    /proc/PID/root/<path inside the target>, checked against ``inode`` when it is known. A host
    path given for a chrooted target (--obj) that exists only outside is kept as it is.
    """
    if pid is None or same_root(pid):
        return path
    inside = procfs.path(pid, "root")
    candidates = [inside + path]
    try:
        root = procfs.readlink(pid, "root").rstrip("/")
    except procfs.ProcError:
        root = ""
    if root and path.startswith(root + "/"):
        candidates.insert(0, inside + path[len(root) :])
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if inode is None or st.st_ino == inode:
            return candidate
    return path if os.path.exists(path) else candidates[0]


def same_root(pid: int) -> bool:
    """True when ``pid`` has our root (or it cannot be told: the plain path is the best guess)."""
    try:
        ours = os.stat("/")
        theirs = procfs.stat(pid, "root/")
    except OSError:
        return True
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


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
        if mapping.open_as:
            return mapping.open_as
        return self.root + mapping.path if self.root else mapping.path

    def by_basename(self, name: str) -> Mapping | None:
        """The first file mapping whose base name (or full path) is ``name``."""
        for m in self.mappings:
            if m.is_file and (m.path == name or m.path.rsplit("/", 1)[-1] == name):
                return m
        return None
