"""Which probe backend to use: ``choose_backend("auto"|"native"|"bpftrace"|"bcc")`` with the reason.

The one place that knows every backend module. A new backend adds its class here: to ``NAMES``,
to the explicit choice below and, if ``--backend auto`` may pick it, to the auto order.
"""

from __future__ import annotations

import os

from leakhunt.errors import LeakhuntError, ToolMissing, UsageError
from leakhunt.probe import native, tools
from leakhunt.probe.backend import Backend
from leakhunt.probe.bpftrace import BpftraceBackend
from leakhunt.probe.growth import GrowthBackend
from leakhunt.probe.kernel import KernelBackend
from leakhunt.probe.memleak import MemleakBackend
from leakhunt.probe.native import NativeBackend

NAMES = ("native", "bcc", "bpftrace")  # the order other_backend() tries them in


def host_wide_bpftrace(tool: tools.Tool) -> bool:
    """True when this bpftrace fires its shared-library uprobes in every process, not only ``-p``'s.

    bpftrace passes the pid of ``-p`` to the kernel for library uprobes only since 0.20
    (bpftrace#2830); before, the pid predicate runs *after* the trap, so every process on the host
    that calls malloc or free pays for the probe (measured here with 0.17: an unprobed loop went
    from 13 ns to 7,252 ns per malloc/free pair). An unknown version counts as old.
    """
    version = tool.version_tuple
    return not version or version < (0, 20)


def _host_wide_warning(tool: tools.Tool) -> str:
    return (
        f"bpftrace {tool.version} attaches its malloc/free probes for EVERY process on this host, "
        "not only the target (bpftrace < 0.20 ignores -p for library uprobes): while it runs, every "
        "process that allocates memory slows down (about 7 us per malloc/free pair here)"
    )


def choose_backend(requested: str, *, allow_native: bool = True, mode: str = "alloc") -> Backend:
    """The backend to use for ``--backend auto|native|bpftrace|bcc``, with the reason for the choice.

    auto never picks a backend that slows other processes: it prefers leakhunt's own probe
    (native: pid-filtered in the kernel, probes on emulated instructions, the cheapest), then BCC's
    memleak (pid-filtered in the kernel), then a bpftrace that filters by pid (>= 0.20). Where only
    an older bpftrace exists it refuses with the reason: ``--backend bpftrace`` accepts the cost,
    and the choice carries a warning to show before attaching. ``allow_native=False`` (trace mode,
    which the native probe does not do) skips native.
    """
    if requested not in ("auto", *NAMES):
        raise UsageError(f"unknown backend {requested!r}", hint="choose auto, native, bpftrace or bcc")
    if mode != "alloc":
        return _choose_tracepoint_backend(requested, mode)
    if requested == "native":
        if not allow_native:
            raise UsageError("the native backend has no per-call trace", hint="use --backend bcc or bpftrace")
        host, why_not = _native_host()
        if host is None:
            raise ToolMissing(f"the native backend cannot run here: {why_not}", hint=tools.SETUP_HINT)
        return NativeBackend(host, "requested with --backend native")
    if requested == "bpftrace":
        bpftrace = tools.find_bpftrace()
        if bpftrace is None:
            raise ToolMissing("bpftrace is not installed", hint=tools.SETUP_HINT)
        warning = _host_wide_warning(bpftrace) if host_wide_bpftrace(bpftrace) else None
        return BpftraceBackend(bpftrace, "requested with --backend bpftrace", warning)
    if requested == "bcc":
        memleak = tools.find_memleak()
        if memleak is None:
            raise ToolMissing("BCC's memleak is not installed (memleak-bpfcc)", hint=tools.SETUP_HINT)
        if memleak.flavor == "bcc" and tools.kernel_headers_dir() is None:
            raise ToolMissing(
                f"{memleak.path} needs kernel headers for {os.uname().release} and none were found",
                hint=tools.SETUP_HINT,
            )
        return MemleakBackend(memleak, "requested with --backend bcc")
    skipped: list[str] = []
    if allow_native:
        host, why_not = _native_host()
        if host is not None:
            return NativeBackend(
                host,
                f"auto: leakhunt's own probe (BCC {host.version} via {host.path}): probes fire for the "
                "target only and sit on instructions the kernel emulates, the cheapest backend",
            )
        skipped.append(f"native: {why_not}")
    memleak = tools.find_memleak()
    if memleak is not None and (memleak.flavor == "libbpf" or tools.kernel_headers_dir() is not None):
        return MemleakBackend(
            memleak,
            f"auto: {memleak.path} (its probes fire for the target only)"
            + (f"; not {'; '.join(skipped)}" if skipped else ""),
        )
    skipped.append(
        "bcc: memleak is not installed" if memleak is None else "bcc: no kernel headers to compile with"
    )
    bpftrace = tools.find_bpftrace()
    if bpftrace is not None and not host_wide_bpftrace(bpftrace):
        return BpftraceBackend(
            bpftrace,
            f"auto: bpftrace {bpftrace.version} (filters by pid in the kernel); not {'; '.join(skipped)}",
        )
    if bpftrace is not None:
        raise UsageError(
            _host_wide_warning(bpftrace) + f". No other backend works here ({'; '.join(skipped)})",
            hint="pass --backend bpftrace to accept that cost, or install what the native backend needs "
            "(python3-bpfcc and kernel headers: `bash scripts/setup.sh`)",
        )
    raise ToolMissing(f"no probe backend works here ({'; '.join(skipped)})", hint=tools.SETUP_HINT)


def _choose_tracepoint_backend(requested: str, mode: str) -> Backend:
    """The backend of kernel and growth mode: tracepoints, not uprobes.

    bpftrace first: its tracepoint scripts filter by pid and cost no process anything it does not
    already pay (no uprobe: the slowdown of host-wide uprobes in bpftrace < 0.20 does not apply).
    BCC's memleak without -p does kernel mode (every task); growth mode is bpftrace only.
    """
    if requested == "native" or (requested == "bcc" and mode == "growth"):
        raise UsageError(f"--backend {requested} does not do --mode {mode}", hint="use --backend bpftrace")
    bpftrace = tools.find_bpftrace() if requested in ("auto", "bpftrace") else None
    if bpftrace is not None:
        why = "requested with --backend bpftrace" if requested == "bpftrace" else (
            f"auto: bpftrace {bpftrace.version} at {bpftrace.path} ({mode} mode reads tracepoints; "
            "bpftrace filters them by pid)"
        )  # fmt: skip
        if mode == "kernel":
            return KernelBackend(bpftrace, why, name="bpftrace")
        return GrowthBackend(bpftrace, why)
    if requested == "bpftrace" or mode == "growth":
        raise ToolMissing(f"--mode {mode} needs bpftrace, which is not installed", hint=tools.SETUP_HINT)
    memleak = tools.find_memleak()
    if memleak is None or memleak.flavor != "bcc" or tools.kernel_headers_dir() is None:
        raise ToolMissing(
            "kernel mode needs bpftrace, or BCC's memleak with kernel headers", hint=tools.SETUP_HINT
        )
    why = (
        "requested with --backend bcc" if requested == "bcc" else f"auto: bpftrace not found; {memleak.path}"
    )
    return KernelBackend(memleak, why, name="bcc", attach_timeout=120.0)  # BCC compiles first


def _native_host() -> tuple[tools.Tool | None, str]:
    """The native backend's host Python, or None and why not."""
    why_not = native.unusable_reason()
    if why_not is not None:
        return None, why_not
    host = native.find_host()
    if host is None:
        return None, "no system python3 with BCC's module installed (apt-get install python3-bpfcc)"
    return host, ""


def other_backend(backend: Backend, names: tuple[str, ...] = NAMES) -> Backend | None:
    """Another backend among ``names`` than ``backend`` that is usable here and slows no other
    process, if any (after ``backend`` failed to attach: another tracer in the way)."""
    for name in names:
        if name == backend.name:
            continue
        try:
            other = choose_backend(name)
        except LeakhuntError:
            continue
        if other.warning is None:
            return other
    return None
