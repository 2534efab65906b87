"""``leakhunt doctor``: can this host probe? Each failed check prints the command that fixes it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click
from rich.markup import escape

from leakhunt.cli.common import SafeConsole
from leakhunt.errors import EXIT_OK, EXIT_USAGE, LeakhuntError
from leakhunt.probe import choose, distro, native, runner, tools, tracefs

SETUP = "sudo bash scripts/setup.sh"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the exact command (or step) that fixes a failed check
    # what cannot work without it: "all", a backend ("native", "bcc", "bpftrace"), several joined
    # by "+", or "none" for a warning
    needed_by: str = "all"


def _tracefs_dir() -> Path | None:
    for candidate in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (candidate / "uprobe_events").exists():
            return candidate
    return None


def run_checks(release: distro.OsRelease | None = None) -> list[Check]:
    """Every check, in the order a user should fix them.

    The install commands follow ``release`` (default: this host's /etc/os-release): apt on Debian and
    Ubuntu, dnf on Fedora/RHEL, pacman on Arch.
    """
    if release is None:
        release = distro.read_os_release()
    hints = distro.install_hints(release, os.uname().release)
    checks: list[Check] = [_distribution_check(hints)]
    missing = tools.missing_privileges()
    if missing:
        checks.append(
            Check(
                "privileges",
                False,
                f"uid {os.geteuid()} without {', '.join(missing)}",
                "sudo leakhunt doctor  (run leakhunt as root, or grant CAP_BPF and CAP_PERFMON)",
            )
        )
    else:
        checks.append(Check("privileges", True, "root" if os.geteuid() == 0 else "CAP_SYS_ADMIN"))

    btf = Path("/sys/kernel/btf/vmlinux")
    checks.append(
        Check(
            "kernel BTF",
            btf.exists(),
            str(btf) if btf.exists() else f"{btf} missing",
            "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's stock kernels are)",
            needed_by="bpftrace",
        )
    )

    tracefs = _tracefs_dir()
    checks.append(
        Check(
            "tracefs",
            tracefs is not None,
            f"mounted at {tracefs}" if tracefs else "uprobe_events not found",
            "sudo mount -t tracefs nodev /sys/kernel/tracing",
        )
    )
    debugfs = Path("/sys/kernel/debug/tracing")
    debug_ok = debugfs.is_dir() and any(debugfs.iterdir()) if debugfs.exists() else False
    checks.append(
        Check(
            "debugfs",
            debug_ok,
            "mounted at /sys/kernel/debug" if debug_ok else "/sys/kernel/debug/tracing is empty or missing",
            "sudo mount -t debugfs nodev /sys/kernel/debug",
            needed_by="bcc",
        )
    )
    if tracefs is not None:
        checks.append(_stale_uprobes_check())
    lockdown = _lockdown()
    checks.append(
        Check(
            "kernel lockdown",
            lockdown != "confidentiality",
            f"lockdown={lockdown}",
            "boot with lockdown=none (or disable Secure Boot's lockdown): it forbids reading process memory",
        )
    )

    bpftrace = tools.find_bpftrace()
    if bpftrace is None:
        checks.append(Check("bpftrace", False, "not found", hints.bpftrace, "bpftrace"))
    else:
        checks.append(Check("bpftrace", True, f"{bpftrace.path} {bpftrace.version}", needed_by="bpftrace"))
        if not missing:
            checks.append(_bpftrace_smoke(bpftrace))

    memleak = tools.find_memleak()
    if memleak is None:
        checks.append(Check("memleak (BCC)", False, "not found", hints.bcc, "bcc"))
    else:
        checks.append(
            Check(
                "memleak (BCC)", True, f"{memleak.path} {memleak.version} ({memleak.flavor})", needed_by="bcc"
            )
        )
    native_why_not = native.unusable_reason()
    host = native.find_host() if native_why_not is None else None
    if host is not None:
        checks.append(
            Check(
                "leakhunt's own probe", True, f"BCC {host.version} module for {host.path}", needed_by="native"
            )
        )
    else:
        checks.append(
            Check(
                "leakhunt's own probe",
                False,
                native_why_not or "no system python3 with BCC's module",
                hints.bcc,
                needed_by="native",
            )
        )
    if memleak is None or memleak.flavor == "bcc" or host is not None:
        headers = tools.kernel_headers_dir()
        kernel = os.uname().release
        checks.append(
            Check(
                "kernel headers",
                headers is not None,
                f"{headers}" if headers else f"none for {kernel} in /lib/modules/{kernel}/build",
                f"{hints.headers}  (for a custom kernel: {SETUP}, which links the nearest headers)"
                if hints.setup_script
                else hints.headers,
                needed_by="bcc+native",  # both compile their BPF C at run time
            )
        )
    return checks


def _stale_uprobes_check() -> Check:
    """uprobe events left in tracefs by BCC processes that are gone (a failed or killed attach)."""
    stale = tracefs.find_stale()
    if not stale:
        return Check(
            "stale uprobe events", True, "none left by BCC processes that are gone", needed_by="none"
        )
    owners = sorted({e.owner_pid for e in stale if e.owner_pid is not None})
    listed = ", ".join(f"{e.kind}:{e.group}/{e.name}" for e in stale[:3])
    more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
    return Check(
        "stale uprobe events",
        False,
        f"{len(stale)} left by BCC process(es) {', '.join(map(str, owners))} that are gone: {listed}{more}",
        tracefs.removal_command(stale),
        needed_by="none",  # a warning: probing still works
    )


def _distribution_check(hints: distro.InstallHints) -> Check:
    """Always passes: says which install commands the fixes below use."""
    if hints.family == "unknown":
        detail = (
            f"{hints.name}: not one leakhunt knows (Debian, Ubuntu, Fedora/RHEL, Arch); "
            "install bpftrace and BCC yourself"
        )
    elif hints.setup_script:
        detail = f"{hints.name} (supported; {SETUP} installs everything)"
    else:
        detail = f"{hints.name} (fixes below use {hints.bpftrace.split()[1]})"
    return Check("distribution", True, detail)


def _bpftrace_smoke(tool: tools.Tool) -> Check:
    try:
        done = runner.run_capture([tool.path, "-e", 'BEGIN { printf("ok\\n"); exit(); }'], timeout=60)
    except LeakhuntError as err:
        return Check(
            "bpftrace loads a program", False, err.message, "leakhunt doctor again, or see dmesg", "bpftrace"
        )
    ok = done.returncode == 0 and "ok" in done.stdout
    last = [line for line in done.stderr.splitlines() if "RLIMIT_MEMLOCK" not in line]
    detail = "BEGIN probe ran" if ok else (last[-1] if last else f"exit status {done.returncode}")
    return Check(
        "bpftrace loads a program", ok, detail, "see the message above; dmesg may say more", "bpftrace"
    )


def _lockdown() -> str:
    try:
        text = Path("/sys/kernel/security/lockdown").read_text()
    except OSError:
        return "none"
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else "none"


def usable_backends(checks: list[Check]) -> list[str]:
    """Backends whose every needed check passed."""
    failed = {need for c in checks if not c.ok for need in c.needed_by.split("+")}
    if "all" in failed:
        return []
    return [b for b in ("native", "bcc", "bpftrace") if b not in failed]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def doctor() -> int:
    """Check that this host can probe, and say how to fix what is missing.

    Checks privileges (root or CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN), kernel BTF, tracefs and
    debugfs mounts, kernel lockdown, bpftrace and BCC's memleak (with versions; bpftrace runs a
    tiny program), and the kernel headers BCC compiles against. Every failed check is followed by
    the exact command that fixes it; `sudo bash scripts/setup.sh` fixes most at once.

    Exit status: 0 when at least one backend (bpftrace or BCC) can probe, 2 otherwise.
    """
    out = SafeConsole(highlight=False)
    release = distro.read_os_release()
    checks = run_checks(release)
    for check in checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        needs = check.needed_by.replace("+", " and ")
        scope = "" if check.needed_by in ("all", "none") else f" [dim](for {needs})[/dim]"
        out.print(f"{mark} {escape(check.name)}: {escape(check.detail)}{scope}")
        if not check.ok and check.fix:
            out.print(f"      fix: {escape(check.fix)}", soft_wrap=True)  # copied as it is: never wrapped
    usable = usable_backends(checks)
    if usable:
        try:
            choice = choose.choose_backend("auto")
            auto = f"auto picks {choice.name}: {choice.reason.removeprefix('auto: ')}"
        except LeakhuntError as err:
            auto = f"auto picks none: {err.message}"
        out.print(f"ready: leakhunt can probe with {', '.join(usable)} ({auto})", soft_wrap=True)
        return EXIT_OK
    hint = f" ({SETUP})" if distro.install_hints(release, os.uname().release).setup_script else ""
    out.print(f"[red]not ready[/red]: no backend can probe on this host; fix the checks above{hint}")
    return EXIT_USAGE
