"""The one reader of /proc: raw reads that raise ``Gone``/``Denied``, and pure parsers of the text.

In the psutil style (``_pslinux.py``): a read function opens one file and returns its bytes or
text, nothing more; a parser takes that text and never raises, whatever it is given. Callers
decide what a missing process means to them::

    try:
        maps = procfs.parse_maps(procfs.read_text(pid, "maps"))
    except procfs.Gone:      # the process exited (ENOENT, ESRCH)
        ...
    except procfs.Denied:    # EACCES/EPERM: not root, ptrace access refused
        ...

Both are ``ProcError``, itself an ``OSError`` (with ``errno``, ``strerror`` and ``filename``), so
a caller that only cares that the read failed keeps catching ``OSError``.

A zombie still has its /proc directory: its ``maps`` and ``environ`` read empty, its ``exe`` and
``root`` links raise ``Gone``.

``probe/native_host.py`` reads /proc itself: it runs under the system Python and imports nothing
from leakhunt.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

PROC = "/proc"


class ProcError(OSError):
    """A /proc read failed (neither ``Gone`` nor ``Denied``: EMFILE, EIO, ...)."""


class Gone(ProcError):
    """The process (or the /proc file) is not there: it exited, or never existed."""


class Denied(ProcError):
    """The kernel refused the read (not root; a ptrace access check said no)."""


def _error(err: OSError, path: str) -> ProcError:
    if isinstance(err, ProcError):
        return err
    kind: type[ProcError] = ProcError
    if isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno == errno.ESRCH:
        kind = Gone
    elif isinstance(err, PermissionError):
        kind = Denied
    return kind(err.errno, err.strerror, path)


# --- raw reads -------------------------------------------------------------------------------------


def path(pid: int | str, name: str = "", *, root: str = PROC) -> str:
    """``/proc/PID/NAME`` (``pid`` may be ``"self"``; ``name`` empty for the directory)."""
    return f"{root}/{pid}/{name}" if name else f"{root}/{pid}"


def read_bytes(pid: int | str, name: str, *, root: str = PROC) -> bytes:
    """The whole of /proc/PID/NAME. Raises Gone, Denied or ProcError."""
    where = path(pid, name, root=root)
    try:
        with open(where, "rb") as fh:
            return fh.read()
    except OSError as err:
        raise _error(err, where) from err


def read_text(pid: int | str, name: str, *, root: str = PROC) -> str:
    """/proc/PID/NAME as text (undecodable bytes replaced). Raises Gone, Denied or ProcError."""
    return read_bytes(pid, name, root=root).decode("utf-8", "replace")


def read_head(pid: int | str, name: str, size: int, *, root: str = PROC) -> bytes:
    """The first ``size`` bytes of /proc/PID/NAME (``maps`` of a big process is costly to read)."""
    where = path(pid, name, root=root)
    try:
        with open(where, "rb") as fh:
            return fh.read(size)
    except OSError as err:
        raise _error(err, where) from err


def read_system(name: str, *, root: str = PROC) -> str:
    """A host-wide /proc file (``meminfo``, ``slabinfo``, ``sys/kernel/yama/ptrace_scope``) as
    text. Raises Gone (absent), Denied or ProcError."""
    where = f"{root}/{name}"
    try:
        with open(where, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError as err:
        raise _error(err, where) from err


def readlink(pid: int | str, name: str, *, root: str = PROC) -> str:
    """The target of the link /proc/PID/NAME (``exe``, ``root``, ``fd/3``)."""
    where = path(pid, name, root=root)
    try:
        return os.readlink(where)
    except OSError as err:
        raise _error(err, where) from err


def listdir(pid: int | str, name: str, *, root: str = PROC) -> list[str]:
    """The entries of the directory /proc/PID/NAME (``fd``, ``task``)."""
    where = path(pid, name, root=root)
    try:
        return os.listdir(where)
    except OSError as err:
        raise _error(err, where) from err


def stat(pid: int | str, name: str, *, root: str = PROC) -> os.stat_result:
    """``os.stat`` of /proc/PID/NAME (``root/`` is the process's root directory)."""
    where = path(pid, name, root=root)
    try:
        return os.stat(where)
    except OSError as err:
        raise _error(err, where) from err


def exists(pid: int | str, *, root: str = PROC) -> bool:
    """True while /proc/PID exists (a zombie's too)."""
    return os.path.exists(path(pid, root=root))


def pids(*, root: str = PROC) -> list[int]:
    """The process ids /proc lists now ([] when it cannot be listed)."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()]


def open_dir(pid: int, *, root: str = PROC) -> int:
    """An O_DIRECTORY descriptor of /proc/PID: files read through it (``read_at``) belong to that
    very process, so once it exits and its PID is reused the reads raise Gone instead of silently
    reading the newcomer. Close it with ``os.close``."""
    where = path(pid, root=root)
    try:
        return os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise _error(err, where) from err


def read_at(dir_fd: int, name: str) -> bytes:
    """The whole of NAME in a directory opened by ``open_dir``. Raises Gone, Denied or ProcError.

    Raw ``os.read`` calls: a scan sweep reads one of these per process per second.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        raise _error(err, name) from err
    try:
        chunks = [os.read(fd, 8192)]
        while len(chunks[-1]) == 8192:
            chunks.append(os.read(fd, 8192))
        return b"".join(chunks)
    except OSError as err:  # ESRCH: the process exited between open and read
        raise _error(err, name) from err
    finally:
        os.close(fd)


# --- pure parsers (never raise) --------------------------------------------------------------------


@dataclass(frozen=True)
class MapsEntry:
    """One line of /proc/PID/maps::

    55d0c2a4b000-55d0c2a4c000 r-xp 00001000 fe:01 1573026    /tmp/leak
    7ffd6c1e5000-7ffd6c206000 rw-p 00000000 00:00 0          [stack]
    """

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str  # "" for anonymous memory, "[stack]", "[vdso]", ... for special areas
    deleted: bool = False  # the path ended in " (deleted)" (removed from ``path``)

    @property
    def is_file(self) -> bool:
        return self.path.startswith("/")


_PERM_CHARS = frozenset("-rwxsp")
_HEX = frozenset("0123456789abcdef")


def _hex(field: str) -> int | None:
    if not 1 <= len(field) <= 16 or not _HEX.issuperset(field):
        return None
    return int(field, 16)


def parse_maps_line(line: str) -> MapsEntry | None:
    """One /proc/PID/maps line, or None when it is not one (pure; never raises)."""
    parts = line.rstrip("\n").split(None, 5)
    if len(parts) < 5:
        return None
    lo, dash, hi = parts[0].partition("-")
    start, end, offset = _hex(lo), _hex(hi), _hex(parts[2])
    perms, inode = parts[1], parts[4]
    if (
        not dash
        or start is None
        or end is None
        or offset is None
        or len(perms) != 4
        or not _PERM_CHARS.issuperset(perms)
        or not inode.isascii()
        or not inode.isdigit()
    ):
        return None
    name = parts[5].strip() if len(parts) == 6 else ""
    deleted = name.endswith(" (deleted)")
    if deleted:
        name = name.removesuffix(" (deleted)")
    return MapsEntry(start, end, perms, offset, int(inode), name, deleted)


def parse_maps(lines: Iterable[str] | str) -> list[MapsEntry]:
    """Every readable line of /proc/PID/maps, in the file's (address) order; others skipped."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    return [e for e in map(parse_maps_line, lines) if e is not None]


def status_field(data: bytes | str, field: str) -> str | None:
    """The value of ``Field:`` in /proc/PID/status text, stripped, or None when absent."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    key = field + ":"
    for line in text.splitlines():
        if line.startswith(key):
            return line[len(key) :].strip()
    return None


def status_int(data: bytes | str, field: str, base: int = 10) -> int | None:
    """The first number of ``Field:`` in /proc/PID/status (``Tgid``, ``CapEff`` in base 16,
    ``VmSwap`` in kB), or None when absent or not a number."""
    value = status_field(data, field)
    first = value.split()[:1] if value else []
    try:
        return int(first[0], base) if first else None
    except ValueError:
        return None


def environ_value(data: bytes, name: str) -> str | None:
    """The value of ``name`` in a /proc/PID/environ blob (NUL-separated NAME=VALUE)."""
    key = name.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :].decode(errors="replace")
    return None


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """/proc/PID/cmdline (NUL-separated arguments) -> its arguments; () when empty."""
    return tuple(data.rstrip(b"\0").decode("utf-8", "replace").split("\0")) if data else ()


def parse_syscall_number(text: str) -> int | None:
    """The syscall number /proc/PID/syscall starts with (-1: in user space), or None when the
    thread is ``running`` or the text is something else."""
    first = text.split(maxsplit=1)[:1]
    if first and first[0].lstrip("-").isdigit() and first[0].isascii():
        try:
            return int(first[0])
        except ValueError:
            return None
    return None


PF_KTHREAD = 0x00200000


def parse_stat_fields(data: bytes) -> list[bytes] | None:
    """/proc/PID/stat's fields from the third on (the state letter is element 0), or None.

    The command name (field 2) may hold spaces and parentheses, hence the search for the last ')'.
    """
    try:
        return data[data.rindex(b")") + 2 :].split()
    except ValueError:
        return None


def parse_stat_int(data: bytes, field: int) -> int | None:
    """Field number ``field`` of /proc/PID/stat as proc(5) counts them (1 = pid), or None."""
    fields = parse_stat_fields(data)
    try:
        return int(fields[field - 3]) if fields is not None and field >= 3 else None
    except (ValueError, IndexError):
        return None


def parse_stat_flags(data: bytes) -> int | None:
    """Field 9 of /proc/PID/stat (the PF_* flags: PF_KTHREAD for a kernel thread), or None."""
    return parse_stat_int(data, 9)


def parse_stat_starttime(data: bytes) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None (pure)."""
    return parse_stat_int(data, 22)


def parse_status_identity(data: bytes) -> tuple[str, int | None, str]:
    """(Name, real uid, state letter) from /proc/PID/status text (pure; never raises)."""
    name, uid, state = "?", None, "?"
    for line in data.split(b"\n")[:12]:
        if line.startswith(b"Name:"):
            name = line[5:].strip().decode("utf-8", "replace")
        elif line.startswith(b"State:"):
            state = line[6:].strip()[:1].decode("ascii", "replace") or "?"
        elif line.startswith(b"Uid:"):
            parts = line[4:].split()
            if parts and parts[0].isdigit():
                uid = int(parts[0])
    return name, uid, state


# The lines wanted, each with the newline before it, so "VmSize" never matches inside another name.
_STATUS_KEYS = (b"\nVmSize:", b"\nVmRSS:", b"\nRssFile:", b"\nRssShmem:", b"\nVmSwap:")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class StatusMemory:
    """The memory lines of /proc/PID/status, in bytes. None when the process has no address
    space (a kernel thread or a zombie)."""

    vms: int
    rss: int
    shared: int  # RssFile + RssShmem: what statm (and psutil) call "shared"
    swap: int


def parse_status_memory(data: bytes) -> StatusMemory | None:
    """Memory numbers from the text of /proc/PID/status (pure; never raises).

    ``VmRSS:\\t    1736 kB`` lines; a zombie or kernel thread has no Vm lines at all -> None.
    One ``find`` per wanted line: splitting all ~55 lines costs more than reading the file.
    """
    values = [0, 0, 0, 0, 0]
    for slot, key in enumerate(_STATUS_KEYS):
        at = data.find(key)
        if at < 0:
            if slot < 2:  # no VmSize / VmRSS: no address space
                return None
            continue
        end = data.find(b"\n", at + 1)
        field = data[at + len(key) : end if end > 0 else len(data)].split()
        try:
            values[slot] = int(field[0]) * 1024
        except (ValueError, IndexError):
            if slot < 2:
                return None
    return StatusMemory(vms=values[0], rss=values[1], shared=values[2] + values[3], swap=values[4])


def parse_statm(data: bytes, page_size: int = PAGE_SIZE) -> StatusMemory | None:
    """Memory numbers from /proc/PID/statm (``size resident shared text lib data dt``, in pages).

    statm has no swap figure: ``swap`` is 0, which is exact on a host without swap (the only case the
    sweep reads statm). All zeros (a zombie, a kernel thread) -> None. Pure; never raises.
    """
    fields = data.split()
    try:
        size, resident, shared = int(fields[0]), int(fields[1]), int(fields[2])
    except (ValueError, IndexError):
        return None
    if size <= 0:
        return None
    return StatusMemory(vms=size * page_size, rss=resident * page_size, shared=shared * page_size, swap=0)


def parse_swap_total(meminfo: bytes) -> int | None:
    """SwapTotal of /proc/meminfo in bytes, or None when absent (pure; never raises)."""
    at = meminfo.find(b"SwapTotal:")
    if at < 0:
        return None
    field = meminfo[at + 10 : at + 40].split()
    try:
        return int(field[0]) * 1024
    except (ValueError, IndexError):
        return None


def parse_meminfo_slab(text: str) -> tuple[int, int] | None:
    """(SUnreclaim, Slab) in bytes from /proc/meminfo text, or None when either is missing::

    Slab:             417676 kB
    SUnreclaim:        42824 kB
    """
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Slab", "SUnreclaim"):
            parts = rest.split()
            if parts and parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 15:
                found[name] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    if "Slab" not in found or "SUnreclaim" not in found:
        return None
    return found["SUnreclaim"], found["Slab"]


def parse_slabinfo(text: str) -> dict[str, int]:
    """Bytes in use per slab cache (active objects x object size) from /proc/slabinfo 2.x text::

    # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : ...
    filp                 3264   3264    256   32    2 : tunables    0    0    0 : slabdata ...
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "slabinfo")):
            continue
        parts = line.split()
        if len(parts) < 4 or not all(p.isascii() and p.isdigit() and len(p) <= 15 for p in parts[1:4]):
            continue
        out[parts[0][:64]] = int(parts[1]) * int(parts[3])
    return out
