"""Process memory sampling: the only module that uses psutil.

``memory_info()`` reads /proc/PID/statm (cheap); swap comes from /proc/PID/status (VmSwap).
Processes vanish (NoSuchProcess), deny access (AccessDenied) or turn zombie at any time: the
functions here return None for those instead of raising.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import pwd
import resource
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Literal

import psutil

from leakhunt import procfs
from leakhunt.model import MemSample, ProcessKey, Series
from leakhunt.procfs import (
    StatusMemory,
    parse_meminfo_slab,
    parse_slabinfo,
    parse_stat_starttime,
    parse_statm,
    parse_status_identity,
    parse_status_memory,
    parse_swap_total,
)


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    create_time: float
    comm: str
    cmdline: tuple[str, ...]
    exe: str | None
    username: str | None
    is_kernel_thread: bool
    status: str


def read_swap(pid: int) -> int | None:
    """VmSwap of a process in bytes (0 when the line is absent), or None when unreadable."""
    try:
        status = procfs.read_bytes(pid, "status")
    except procfs.ProcError:
        return None
    if procfs.status_field(status, "VmSwap") is None:
        return 0
    swap = procfs.status_int(status, "VmSwap")
    return None if swap is None else swap * 1024


def read_mem(pid: int, t: float, *, with_swap: bool = True) -> MemSample | None:
    """One memory sample of ``pid`` at relative time ``t``, or None if it is gone or unreadable."""
    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    swap = read_swap(pid) if with_swap else None
    return MemSample(t=t, rss=info.rss, vms=info.vms, shared=getattr(info, "shared", 0), swap=swap)


def describe(pid: int) -> ProcessInfo | None:
    """Identity of a process, or None if there is no such process."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            create_time = proc.create_time()
            comm = proc.name()
            status = proc.status()
            try:
                cmdline = tuple(proc.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = ()
            try:
                exe: str | None = proc.exe() or None
            except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
                exe = None
            try:
                username: str | None = proc.username()
            except (psutil.AccessDenied, KeyError):
                username = None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ProcessInfo(pid, 0.0, "?", (), None, None, False, "unknown")
    return ProcessInfo(
        pid=pid,
        create_time=create_time,
        comm=comm,
        cmdline=cmdline,
        exe=exe,
        username=username,
        is_kernel_thread=_is_kernel_thread(pid, cmdline),
        status=status,
    )


def _is_kernel_thread(pid: int, cmdline: tuple[str, ...]) -> bool:
    """Kernel threads have PF_KTHREAD in /proc/PID/stat's flags field."""
    try:
        flags = procfs.parse_stat_flags(procfs.read_bytes(pid, "stat"))
    except procfs.ProcError:
        flags = None
    if flags is None:
        return not cmdline and pid != os.getpid()
    return bool(flags & procfs.PF_KTHREAD)


# --- sweeps: many processes, many times ------------------------------------------------------
#
# One sweep reads a single file per process: /proc/PID/status, which carries every number the scan
# needs (VmSize, VmRSS, RssFile, RssShmem, VmSwap), instead of psutil's statm + status (two opens);
# on a host without swap (SwapTotal 0, checked every sweep) the cheaper /proc/PID/statm, whose
# size/resident/shared are the same counters (~4 us of kernel time against ~9 us here).
# Each tracked process keeps an O_DIRECTORY descriptor of its /proc/PID: files opened through it
# belong to that very process, so when the process exits and its PID is reused the reads fail
# (ENOENT/ESRCH) instead of silently reading the newcomer.
# That keeps series keyed by (pid, create_time) without re-reading /proc/PID/stat every sweep.


@dataclass(frozen=True)
class Candidate:
    """A process met for the first time in a sweep, offered to the caller's filter."""

    pid: int
    create_time: float
    name: str
    cmdline: tuple[str, ...]
    uid: int | None


@dataclass(frozen=True)
class SweepStats:
    """What one sweep met. ``unreadable`` maps a reason ("permission denied") to a count."""

    listed: int  # pids in the directory listing (or asked for)
    sampled: int  # processes whose memory was read this sweep
    new: int  # processes met for the first time (accepted or not)
    gone: int  # tracked processes that exited since the previous sweep
    no_memory: int  # kernel threads and zombies (nothing to sample)
    unreadable: tuple[tuple[str, int], ...]
    cpu_s: float
    wall_s: float
    source: str = "status"  # the /proc file read per process: status, or statm on a host without swap


@dataclass
class _Tracked:
    pid: int
    create_time: float
    starttime: int
    dir_fd: int | None
    series: SeriesBuffer


# Samples kept per process: a 1-hour scan at 1 s keeps one in 16-32 (enough to judge, which uses at
# most 120, and to chart), and 1,000 processes hold ~9 MiB of samples while scanning.
DEFAULT_CAPACITY = 256


class SeriesBuffer:
    """A bounded memory series of one process: columns in ``array`` (8 bytes a value, no object per
    sample), at most ``capacity`` points. When full, every second point is dropped and the sampling
    stride doubles, so an hour-long scan keeps an evenly spaced, real-sample view of the whole
    window in fixed memory. The newest sample is always kept apart (``latest()``)."""

    __slots__ = (
        "_latest",
        "_latest_t",
        "_rss",
        "_shared",
        "_since_kept",
        "_swap",
        "_t",
        "_vms",
        "capacity",
        "stride",
        "window",
    )

    def __init__(self, capacity: int = DEFAULT_CAPACITY, window: float | None = None) -> None:
        self.capacity = max(capacity, 8)
        # Only the last ``window`` seconds are kept (``leakhunt agent``: judged over a sliding window).
        self.window = window
        self.stride = 1  # keep one sweep in ``stride``
        self._t = array("d")
        self._rss = array("q")
        self._vms = array("q")
        self._shared = array("q")
        self._swap = array("q")
        # The newest sample, kept as given: building a MemSample per sweep would cost more than reading.
        self._latest: StatusMemory | None = None
        self._latest_t = 0.0
        self._since_kept = 0

    def __len__(self) -> int:
        return len(self._t)

    def add(self, t: float, mem: StatusMemory) -> None:
        """Record one sample taken ``t`` seconds into the scan."""
        self._latest = mem
        self._latest_t = t
        if self.window is not None and self._t and self._t[0] < t - self.window:
            old = bisect_left(self._t, t - self.window)
            for column in (self._t, self._rss, self._vms, self._shared, self._swap):
                del column[:old]
        self._since_kept += 1
        if self._t and self._since_kept < self.stride:
            return
        self._since_kept = 0
        if len(self._t) >= self.capacity:
            for column in (self._t, self._rss, self._vms, self._shared, self._swap):
                del column[1::2]
            self.stride *= 2
        self._t.append(t)
        self._rss.append(mem.rss)
        self._vms.append(mem.vms)
        self._shared.append(mem.shared)
        self._swap.append(mem.swap)

    def latest(self) -> MemSample | None:
        """The newest sample taken (kept or not)."""
        mem = self._latest
        if mem is None:
            return None
        return MemSample(t=self._latest_t, rss=mem.rss, vms=mem.vms, shared=mem.shared, swap=mem.swap)

    def samples(self) -> tuple[MemSample, ...]:
        """The kept samples, oldest first, ending with the newest sample taken."""
        out = [
            MemSample(t=t, rss=r, vms=v, shared=s, swap=w)
            for t, r, v, s, w in zip(self._t, self._rss, self._vms, self._shared, self._swap, strict=True)
        ]
        latest = self.latest()
        if latest is not None and (not out or out[-1].t != latest.t):
            out.append(latest)
        return tuple(out)

    def nbytes(self) -> int:
        """Bytes held by the sample columns (for the memory-bound figure)."""
        return sum(
            c.buffer_info()[1] * c.itemsize for c in (self._t, self._rss, self._vms, self._shared, self._swap)
        )


# Processes that ended during a scan kept for the report (those that grew most).
MAX_FINISHED = 2000


def _growth(series: SeriesBuffer) -> float:
    """How much a finished process's anonymous memory rose over its kept samples (its rank for keeping)."""
    samples = series.samples()
    if not samples:
        return 0.0
    first = samples[0].anon
    return float(max(s.anon for s in samples) - first)


class Sweeper:
    """Samples the memory of every process (or of ``pids``) once per ``sweep()`` call.

    Never raises for a process that vanishes, denies access or turns zombie mid-scan: those are
    counted in each sweep's ``SweepStats``. ``accept`` filters processes when first met (name, user,
    ...); rejected ones are not read again while their PID stays listed. Call ``close()`` (or use it
    as a context manager) to release the per-process directory descriptors.
    """

    def __init__(
        self,
        pids: Collection[int] | None = None,
        *,
        accept: Callable[[Candidate], bool] | None = None,
        exclude: Collection[int] = (),
        capacity: int = DEFAULT_CAPACITY,
        window: float | None = None,
        proc_root: str = "/proc",
        source: Literal["status", "statm"] | None = None,
        max_finished: int = MAX_FINISHED,
    ) -> None:
        self.pids = None if pids is None else tuple(sorted(set(pids)))
        self.accept = accept
        self.exclude = frozenset(exclude)
        self.capacity = capacity
        self.window = window  # seconds of samples kept per process (None: the whole scan)
        self.proc_root = proc_root
        self.source = source  # None: statm on a host without swap, else status
        self._tracked: dict[int, _Tracked] = {}
        # Processes that ended mid-scan: at most ``max_finished``, a heap that drops those that grew
        # least (a host starting 48 processes a second would otherwise keep ~170k of them an hour).
        self.max_finished = max_finished
        self._finished: list[tuple[float, int, _Tracked, Candidate]] = []
        self.finished_dropped = 0  # ended processes forgotten to keep that bound
        self._info: dict[tuple[int, float], Candidate] = {}
        self._rejected: set[int] = set()
        self._start = time.monotonic()
        self._boot_time = psutil.boot_time()
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        # distinct processes that denied access, per reason: pids still listed, and a tally of the
        # ones that left (so that process churn does not grow these sets)
        self.unreadable: dict[str, set[int]] = {}
        self._unreadable_gone: dict[str, int] = {}
        self.sampled = 0  # distinct processes met and accepted over the scan
        self._order = itertools.count()
        _raise_fd_limit()

    # --- one sweep -----------------------------------------------------------------------------

    def sweep(self) -> SweepStats:
        """Read every wanted process once; returns what this sweep met."""
        wall0, cpu0 = time.perf_counter(), time.process_time()
        t = time.monotonic() - self._start
        # Without swap on the host, statm (7 numbers, half the kernel time of status) says it all.
        source = self.source or ("statm" if self._swap_total() == 0 else "status")
        listed = self._list()
        listed_set = set(listed)
        self._rejected &= listed_set
        for reason, pids in self.unreadable.items():
            left = pids - listed_set
            if left:
                self._unreadable_gone[reason] = self._unreadable_gone.get(reason, 0) + len(left)
                pids.difference_update(left)
        unreadable: dict[str, int] = {}
        sampled = new = gone = no_memory = 0
        for pid, tracked in list(self._tracked.items()):
            if pid not in listed_set:
                self._retire(tracked)
                gone += 1
        for pid in listed:
            if pid in self._rejected or pid in self.exclude:
                continue
            # Twice at most: when a tracked process turns out gone while its PID is listed, the PID
            # already belongs to a newcomer, which is met (and sampled) right away.
            for _ in range(2):
                tracked_or_none = self._tracked.get(pid)
                if tracked_or_none is None:
                    outcome = self._discover(pid)
                    if isinstance(outcome, str):
                        if outcome in ("gone", "rejected", "no memory"):
                            no_memory += outcome == "no memory"
                        else:
                            unreadable[outcome] = unreadable.get(outcome, 0) + 1
                            self.unreadable.setdefault(outcome, set()).add(pid)
                        break
                    new += 1
                    tracked = outcome
                else:
                    tracked = tracked_or_none
                data, err = self._read(tracked.pid, tracked.dir_fd, source)
                if data is None:
                    if err == "permission denied":
                        unreadable[err] = unreadable.get(err, 0) + 1
                        self.unreadable.setdefault(err, set()).add(pid)
                        break
                    self._retire(tracked)
                    gone += 1
                    continue
                if tracked.dir_fd is None and not self._same_process(tracked):
                    self._retire(tracked)
                    gone += 1
                    continue
                mem = parse_statm(data) if source == "statm" else parse_status_memory(data)
                if mem is None:  # turned zombie: its memory is gone, its series ends here
                    self._retire(tracked)
                    no_memory += 1
                    break
                tracked.series.add(t, mem)
                sampled += 1
                self._fill_cmdline(tracked)
                break
        return SweepStats(
            listed=len(listed),
            sampled=sampled,
            new=new,
            gone=gone,
            no_memory=no_memory,
            unreadable=tuple(sorted(unreadable.items())),
            cpu_s=time.process_time() - cpu0,
            wall_s=time.perf_counter() - wall0,
            source=source,
        )

    def _fill_cmdline(self, tracked: _Tracked) -> None:
        """Read the command line again while it is empty: a process met in the middle of its exec
        has no arguments yet (the kernel sets them after the new program's memory)."""
        key = (tracked.pid, tracked.create_time)
        info = self._info[key]
        if info.cmdline:
            return
        raw, _ = self._read(tracked.pid, tracked.dir_fd, "cmdline")
        if raw:
            self._info[key] = replace(info, cmdline=procfs.parse_cmdline(raw))

    def _swap_total(self) -> int | None:
        try:
            return parse_swap_total(procfs.read_system("meminfo", root=self.proc_root).encode())
        except procfs.ProcError:
            return None

    def _list(self) -> list[int]:
        if self.pids is not None:
            return list(self.pids)
        return procfs.pids(root=self.proc_root)

    def _read(self, pid: int, dir_fd: int | None, name: str) -> tuple[bytes | None, str]:
        """Read a whole /proc file; (None, reason) when the process is gone or denies access."""
        try:
            if dir_fd is not None:
                return procfs.read_at(dir_fd, name), ""
            return procfs.read_bytes(pid, name, root=self.proc_root), ""
        except procfs.Denied:
            return None, "permission denied"
        except procfs.ProcError:
            return None, "gone"

    def _discover(self, pid: int) -> _Tracked | str:
        """Start tracking ``pid``, or say why not: gone / rejected / no memory / a reason it is
        unreadable."""
        try:
            dir_fd: int | None = procfs.open_dir(pid, root=self.proc_root)
        except procfs.Denied:
            return "permission denied"
        except procfs.Gone:
            return "gone"
        except procfs.ProcError:
            dir_fd = None  # out of descriptors: fall back to paths plus a start-time check
        stat, err = self._read(pid, dir_fd, "stat")
        status, err2 = self._read(pid, dir_fd, "status") if stat is not None else (None, err)
        starttime = parse_stat_starttime(stat) if stat is not None else None
        if status is None or starttime is None:
            _close(dir_fd)
            reason = err2 or err
            return reason if reason == "permission denied" else "gone"
        name, uid, state = parse_status_identity(status)
        if state in ("Z", "X") or parse_status_memory(status) is None:
            _close(dir_fd)
            self._rejected.add(pid)
            return "no memory"
        raw_cmdline, _ = self._read(pid, dir_fd, "cmdline")
        cmdline = procfs.parse_cmdline(raw_cmdline) if raw_cmdline else ()
        create_time = starttime / self._ticks + self._boot_time
        candidate = Candidate(pid=pid, create_time=create_time, name=name, cmdline=cmdline, uid=uid)
        if self.accept is not None and not self.accept(candidate):
            _close(dir_fd)
            self._rejected.add(pid)
            return "rejected"
        tracked = _Tracked(pid, create_time, starttime, dir_fd, SeriesBuffer(self.capacity, self.window))
        self._tracked[pid] = tracked
        self._info[(pid, create_time)] = candidate
        self.sampled += 1
        return tracked

    def _same_process(self, tracked: _Tracked) -> bool:
        stat, _ = self._read(tracked.pid, None, "stat")
        return stat is not None and parse_stat_starttime(stat) == tracked.starttime

    def _retire(self, tracked: _Tracked) -> None:
        _close(tracked.dir_fd)
        tracked.dir_fd = None
        self._tracked.pop(tracked.pid, None)
        info = self._info[(tracked.pid, tracked.create_time)]
        heapq.heappush(self._finished, (_growth(tracked.series), next(self._order), tracked, info))
        if len(self._finished) > self.max_finished:
            _, _, dropped, _ = heapq.heappop(self._finished)
            self._info.pop((dropped.pid, dropped.create_time), None)
            self.finished_dropped += 1

    # --- results -------------------------------------------------------------------------------

    @property
    def tracked_count(self) -> int:
        return len(self._tracked)

    def held_bytes(self) -> int:
        """Bytes held by all sample columns (live and finished processes)."""
        return sum(t.series.nbytes() for t in self._tracked.values()) + sum(
            t.series.nbytes() for _, _, t, _ in self._finished
        )

    def unreadable_reasons(self) -> tuple[tuple[str, int], ...]:
        """(reason, number of distinct processes) over the whole scan."""
        return tuple(
            sorted(
                (reason, len(pids) + self._unreadable_gone.get(reason, 0))
                for reason, pids in self.unreadable.items()
            )
        )

    def series(self) -> list[Series]:
        """Every process sampled at least once, live ones and those that ended mid-scan."""
        users: dict[int, str | None] = {}
        out: list[Series] = []
        entries = [(t, self._info[(t.pid, t.create_time)], True) for t in self._tracked.values()]
        entries += [(t, info, False) for _, _, t, info in sorted(self._finished, key=lambda e: e[1])]
        for tracked, info, alive in entries:
            samples = tracked.series.samples()
            if not samples:
                continue
            username = None
            if info.uid is not None:
                if info.uid not in users:
                    users[info.uid] = _user_name(info.uid)
                username = users[info.uid]
            out.append(
                Series(
                    key=ProcessKey(tracked.pid, tracked.create_time),
                    name=info.name,
                    cmdline=info.cmdline,
                    username=username,
                    samples=samples,
                    alive=alive,
                )
            )
        return out

    def forget_finished(self) -> None:
        """Drop what is kept of processes that ended, and the scan-long tallies (``sampled``,
        ``unreadable``): a sweeper that runs for days (``leakhunt agent``) keeps only the living."""
        for _, _, tracked, _info in self._finished:
            self._info.pop((tracked.pid, tracked.create_time), None)
        self._finished.clear()
        self.finished_dropped = 0
        self.sampled = len(self._tracked)
        self._unreadable_gone.clear()
        self.unreadable.clear()

    def close(self) -> None:
        """Release the directory descriptors of tracked processes."""
        for tracked in self._tracked.values():
            _close(tracked.dir_fd)
            tracked.dir_fd = None

    def __enter__(self) -> Sweeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _raise_fd_limit() -> None:
    """One descriptor per tracked process: lift the soft limit to the hard one (capped)."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        want = min(want, 1 << 20)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def lookup_uid(user: str) -> int | None:
    """The uid of a user name or numeric uid string, or None if there is no such user."""
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


# --- the kernel's own memory (scan) ----------------------------------------------------------------


class KernelSampler:
    """Samples the kernel's slab memory once per ``sample(t)``: /proc/meminfo always, /proc/slabinfo
    when readable (root). Never raises: an unreadable file is noted once and skipped."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.samples: list[MemSample] = []
        self.caches: dict[str, list[tuple[float, int]]] = {}
        self.slabinfo_error: str | None = None

    def sample(self, t: float) -> None:
        try:
            slab = parse_meminfo_slab(procfs.read_system("meminfo", root=self.proc_root))
        except procfs.ProcError:
            slab = None
        if slab is not None:
            self.samples.append(MemSample(t=round(t, 3), rss=slab[0], vms=slab[1], shared=0, swap=None))
        if self.slabinfo_error is not None:
            return
        try:
            caches = parse_slabinfo(procfs.read_system("slabinfo", root=self.proc_root))
        except procfs.ProcError as err:
            self.slabinfo_error = f"/proc/slabinfo: {err.strerror or err}"
            return
        for name, used in caches.items():
            self.caches.setdefault(name, []).append((round(t, 3), used))
