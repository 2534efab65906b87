"""Process memory sampling: the only module that uses psutil.

``memory_info()`` reads /proc/PID/statm (cheap); swap comes from /proc/PID/status (VmSwap).
Processes vanish (NoSuchProcess), deny access (AccessDenied) or turn zombie at any time: the
functions here return None for those instead of raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from leakhunt.model import MemSample


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
    """VmSwap of a process in bytes, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmSwap:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return 0


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
    """Kernel threads have PF_KTHREAD (0x00200000) in /proc/PID/stat's flags field."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        return bool(int(fields[6]) & 0x00200000)
    except (OSError, ValueError, IndexError):
        return not cmdline and pid != os.getpid()
