"""Finding the probe tools and checking the target before anything is attached.

- ``find_bpftrace()`` / ``find_memleak()``: the tool's path and version, or None when absent.
- ``target_libc(pid)``: the C library the target really maps, as a path usable from *our* mount
  namespace (``/proc/PID/root/...`` when the target lives in a container).
- ``check_pid(pid)``: the target's identity, or ``TargetError`` (no such pid, kernel thread, zombie).
- ``require_root()``: ``PermissionProblem`` unless we may load eBPF programs and attach uprobes.

Versions are queried by running the tools (through ``leakhunt.probe.runner``), never guessed from
package names alone: a hand-built bpftrace in /usr/local/bin wins over Debian's.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from leakhunt import procfs, sample
from leakhunt.errors import LeakhuntError, PermissionProblem, TargetError, UsageError
from leakhunt.model import ALLOCATOR_FUNCTIONS, AllocatorInfo
from leakhunt.probe import allocator, runner
from leakhunt.symbols import maps

MemleakFlavor = Literal["bcc", "libbpf"]

SETUP_HINT = "run `sudo bash scripts/setup.sh` (installs bpftrace, bpfcc-tools and kernel headers)"


@dataclass(frozen=True)
class Tool:
    """A probe program found on this host."""

    path: str
    version: str  # as the tool reports it, without a leading "v" ("0.17.0"); "unknown" if it would not say
    # memleak only: "bcc" = the Python tool (memleak-bpfcc, /usr/share/bcc/tools/memleak),
    # "libbpf" = libbpf-tools' C build (different output format, no -c gate)
    flavor: MemleakFlavor | None = None

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """The numeric version, e.g. (0, 17, 0); () when unknown."""
        return parse_version(self.version)


def parse_version(text: str) -> tuple[int, ...]:
    """The first dotted number in ``text`` as a tuple: "bpftrace v0.23.2" -> (0, 23, 2)."""
    match = re.search(r"(\d+(?:\.\d+)+)", text)
    if not match:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


# --- bpftrace ------------------------------------------------------------------------------------


def find_bpftrace() -> Tool | None:
    """bpftrace on PATH (or in /usr/sbin, /usr/bin, /usr/local/bin), with its version.

    ``LEAKHUNT_BPFTRACE=/path/to/bpftrace`` picks a specific build (and when it names no
    executable file, bpftrace counts as not installed).
    """
    path = env_override("LEAKHUNT_BPFTRACE")
    if path is None:
        path = _which("bpftrace")
    if not path:
        return None
    version = "unknown"
    try:
        done = runner.run_capture([path, "--version"], timeout=15)
    except LeakhuntError:
        return Tool(path, version)
    found = parse_version(done.stdout + done.stderr)
    if found:
        version = ".".join(str(p) for p in found)
    return Tool(path, version)


def bpftrace_map_env(max_keys: int) -> dict[str, str]:
    """Environment that raises bpftrace's map size to ``max_keys``.

    The variable was renamed in 0.20 (BPFTRACE_MAP_KEYS_MAX -> BPFTRACE_MAX_MAP_KEYS); setting both
    is harmless and works with whichever version runs.
    """
    return {"BPFTRACE_MAP_KEYS_MAX": str(max_keys), "BPFTRACE_MAX_MAP_KEYS": str(max_keys)}


# --- memleak -------------------------------------------------------------------------------------

_MEMLEAK_CANDIDATES = (
    "memleak-bpfcc",  # Debian / Ubuntu packaging of BCC's Python tool
    "/usr/share/bcc/tools/memleak",  # upstream BCC install
    "memleak",  # either BCC's tool on PATH or libbpf-tools' C build
)


def find_memleak() -> Tool | None:
    """The first memleak found: memleak-bpfcc, /usr/share/bcc/tools/memleak, then memleak on PATH.

    ``LEAKHUNT_MEMLEAK=/path/to/memleak`` picks a specific one, as LEAKHUNT_BPFTRACE does.
    """
    override = env_override("LEAKHUNT_MEMLEAK")
    candidates: tuple[str, ...] = _MEMLEAK_CANDIDATES if override is None else (override,)
    for name in candidates:
        if not name:
            continue
        path = name if os.path.isabs(name) else _which(name)
        if path is None or not os.access(path, os.X_OK):
            continue
        interpreter = _python_shebang(path)
        if interpreter is not None:
            return Tool(path, _bcc_version(interpreter), "bcc")
        return Tool(path, _libbpf_memleak_version(path), "libbpf")
    return None


def _python_shebang(path: str) -> str | None:
    """The Python interpreter named by a script's ``#!`` line, or None for a binary."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    # "#!/usr/bin/env python3" names the interpreter in its second word
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0]


def _bcc_version(interpreter: str) -> str:
    """BCC's version as the memleak script's own interpreter imports it (0.26.0, 0.30.0, ...)."""
    try:
        done = runner.run_capture(
            [interpreter, "-c", "import bcc; print(getattr(bcc, '__version__', ''))"], timeout=20
        )
        found = parse_version(done.stdout)
        if found:
            return ".".join(str(p) for p in found)
    except LeakhuntError:
        pass
    try:
        done = runner.run_capture(["dpkg-query", "-W", "-f=${Version}", "bpfcc-tools"], timeout=10)
        found = parse_version(done.stdout)
        if done.returncode == 0 and found:
            return ".".join(str(p) for p in found)
    except LeakhuntError:
        pass
    return "unknown"


def _libbpf_memleak_version(path: str) -> str:
    try:
        done = runner.run_capture([path, "--version"], timeout=10)
    except LeakhuntError:
        return "unknown"
    found = parse_version(done.stdout + done.stderr)
    return ".".join(str(p) for p in found) if found else "unknown"


def env_override(variable: str) -> str | None:
    """The tool path from an environment override: None = no override, "" = not installed."""
    value = os.environ.get(variable)
    if value is None:
        return None
    value = os.path.abspath(value) if value else ""
    return value if value and os.path.isfile(value) and os.access(value, os.X_OK) else ""


def _which(name: str) -> str | None:
    # root's PATH under sudo may lack /usr/sbin on some setups; look there too.
    extra = "/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin:/sbin:/bin"
    return shutil.which(name, path=os.environ.get("PATH", "") + ":" + extra)


# --- kernel headers (BCC compiles its BPF program at run time) ----------------------------------


def kernel_headers_dir() -> str | None:
    """Where BCC will find kernel headers for the running kernel, or None.

    BCC looks at /lib/modules/$(uname -r)/build, then the in-kernel /sys/kernel/kheaders.tar.xz.
    """
    build = Path("/lib/modules") / os.uname().release / "build"
    if (build / "include").is_dir() or (build / "Makefile").exists():
        return str(build.resolve())
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return "/sys/kernel/kheaders.tar.xz"
    return None


# --- the target ----------------------------------------------------------------------------------

_LIBC_NAME = re.compile(r"/(libc\.so\.6|libc-[\d.]+\.so|libc\.musl-[\w.-]+|ld-musl-[\w.-]+\.so\.1)$")


def target_libc(pid: int) -> str:
    """The C library ``pid`` maps, as a path this process can open.

    Reads /proc/PID/maps (the mapping the target really uses: a container's own libc, a preloaded
    one). For a target in another mount namespace the path is given through /proc/PID/root.
    Raises TargetError for a static binary (no libc mapped) and when the maps are unreadable.
    """
    try:
        text = procfs.read_text(pid, "maps")
    except procfs.Gone as err:
        raise TargetError(f"no process with pid {pid}") from err
    except procfs.Denied as err:
        raise TargetError(f"cannot read /proc/{pid}/maps: permission denied", hint=why_denied(pid)) from err
    except procfs.ProcError as err:
        raise TargetError(f"cannot read /proc/{pid}/maps: {err.strerror}") from err
    for entry in procfs.parse_maps(text):
        if not entry.path or not _LIBC_NAME.search(entry.path):
            continue
        if entry.deleted:
            raise TargetError(
                f"pid {pid} maps a libc that was deleted since it started ({entry.path})",
                hint="the C library was upgraded under the process; restart it, or pass --obj",
            )
        return mapped_path(pid, entry.path, entry.inode or None)
    raise TargetError(
        f"pid {pid} maps no C library (statically linked?)",
        hint="pass --obj PATH naming the binary or the allocator library it uses",
    )


def object_path(pid: int, obj: str) -> str:
    """--obj as a file path: an absolute path, a library name the target maps, or a file here."""
    if os.path.isabs(obj):
        path = path_in_target(pid, obj)
        if not os.path.isfile(path):
            raise UsageError(f"--obj {obj}: no such file")
        return path
    try:
        maps = procfs.parse_maps(procfs.read_text(pid, "maps"))
    except procfs.ProcError as err:
        raise TargetError(f"cannot read /proc/{pid}/maps") from err
    for entry in maps:
        if entry.path:
            base = os.path.basename(entry.path)
            if base == obj or base.startswith(f"lib{obj}.so") or base.startswith(f"{obj}.so"):
                return mapped_path(pid, entry.path, entry.inode or None)
    raise UsageError(
        f"--obj {obj}: pid {pid} maps no such library",
        hint="give the library's path (with `run`, the command has not loaded its libraries yet) "
        "or the name of a library the process maps (jemalloc)",
    )


def mapped_path(pid: int, path: str, inode: int | None) -> str:
    """A path for a file that ``pid`` maps, as /proc/PID/maps names it, that this process can open
    and the probe tools accept (see ``symbols.maps.host_path``)."""
    return maps.host_path(pid, path, inode)


def allocator_path(pid: int, alloc: AllocatorInfo, *, launched: bool) -> str:
    """The detected allocator's object as a path this host opens and the probe tools accept (a
    launched command is still its gate's shell: the path is read in our own file system)."""
    return alloc.path if launched else maps.host_path(pid, alloc.path)


def probed_object(pid: int, obj: str | None, alloc: AllocatorInfo | None, *, launched: bool) -> str:
    """The object the probes hook: the detected allocator's, else ``--obj`` or the target's C library."""
    if alloc is not None:
        return allocator_path(pid, alloc, launched=launched)
    return object_path(pid, obj) if obj else target_libc(pid)


def path_in_target(pid: int, path: str) -> str:
    """``path`` as seen by ``pid`` (its root and mount namespace), translated to a path we can open
    (``path`` itself when only that exists: a host path given for a chrooted target)."""
    return maps.host_path(pid, path)


def check_pid(pid: int) -> sample.ProcessInfo:
    """The process ``pid`` if leakhunt can investigate it; TargetError otherwise."""
    if pid <= 0:
        raise TargetError(f"invalid pid {pid}", hint="give the pid of a running user-space process")
    info = sample.describe(pid)
    if info is None:
        raise TargetError(
            f"no process with pid {pid}",
            hint="check the pid with `ps -p PID`, or find a suspect with `leakhunt scan`",
        )
    if info.is_kernel_thread:
        raise TargetError(
            f"pid {pid} ({info.comm}) is a kernel thread: it has no user-space heap to probe",
            hint="give the pid of a user-space process",
        )
    if info.status == "zombie":
        raise TargetError(f"pid {pid} ({info.comm}) is a zombie: it has already exited")
    if pid == os.getpid():
        raise TargetError("leakhunt cannot investigate itself")
    return info


# --- privileges ----------------------------------------------------------------------------------

_CAP_SYS_ADMIN = 21
_CAP_PERFMON = 38
_CAP_BPF = 39


def effective_caps() -> int:
    """The effective capability mask of this process (0 when unreadable)."""
    return _status_caps("self", "CapEff") or 0


# capability numbers -> names (linux/capability.h), for saying which one is missing
CAPABILITY_NAMES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]
_CAP_SYS_PTRACE = 19


def _status_caps(pid: int | str, field: str) -> int | None:
    try:
        return procfs.status_int(procfs.read_bytes(pid, "status"), field, base=16)
    except procfs.ProcError:
        return None


def cap_names(mask: int) -> list[str]:
    """``0x1800000`` -> ["CAP_SYS_NICE", "CAP_SYS_RESOURCE"] (unknown bits as CAP_<n>)."""
    return [
        CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else f"CAP_{bit}"
        for bit in range(mask.bit_length())
        if mask >> bit & 1
    ]


def why_denied(pid: int) -> str:
    """What really refused access to ``pid``'s /proc files (maps, mem, root), as a hint.

    Not being root is the usual reason; as root, the kernel's ptrace access check still refuses
    when the target holds capabilities this process lacks (a restricted bounding set, a container),
    when Yama forbids it, or when a security module (AppArmor, SELinux) says no.
    """
    try:
        scope = procfs.read_system("sys/kernel/yama/ptrace_scope").strip()
    except procfs.ProcError:
        scope = ""
    return denied_hint(pid, os.geteuid(), effective_caps(), _status_caps(pid, "CapPrm"), scope)


def denied_hint(pid: int, euid: int, ours: int, theirs: int | None, yama_scope: str) -> str:
    """``why_denied`` from what it read: our euid and effective capabilities, the target's
    permitted ones, and kernel.yama.ptrace_scope ("" when Yama is absent)."""
    if euid != 0:
        return "run leakhunt as root (sudo)"
    has_ptrace = bool(ours >> _CAP_SYS_PTRACE & 1)
    missing = (theirs or 0) & ~ours
    if yama_scope == "3":
        return "kernel.yama.ptrace_scope is 3: no process may inspect another, not even root (until reboot)"
    if not has_ptrace:
        held = f": pid {pid} holds {', '.join(cap_names(missing))}, which leakhunt lacks" if missing else ""
        return (
            f"leakhunt runs as root but without CAP_SYS_PTRACE{held}; the kernel shows a process's "
            "memory map only to one with every capability it has, or with CAP_SYS_PTRACE. Run "
            "leakhunt with the full capability set (not from a restricted shell or container)"
        )
    extra = f" (pid {pid} holds {', '.join(cap_names(missing))}, which leakhunt lacks)" if missing else ""
    return (
        f"leakhunt runs as root with CAP_SYS_PTRACE, yet the kernel's ptrace access check refused to "
        f"show pid {pid}'s memory map{extra}: a security module (AppArmor, SELinux, BPF LSM) or "
        f"another user namespace protects it (see dmesg and the audit log); pid {pid} cannot be "
        "probed from here"
    )


def missing_privileges() -> list[str]:
    """What this process lacks to probe: [] when it may load BPF programs and attach uprobes.

    Root is not enough by itself (a container may drop capabilities), and not required either:
    CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, is what the kernel checks.
    """
    caps = effective_caps()
    if caps & (1 << _CAP_SYS_ADMIN):
        return []
    if caps & (1 << _CAP_BPF) and caps & (1 << _CAP_PERFMON):
        return []
    missing = [] if os.geteuid() == 0 else ["root"]
    wanted = ((_CAP_BPF, "CAP_BPF"), (_CAP_PERFMON, "CAP_PERFMON"), (_CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
    for bit, name in wanted:
        if not caps & (1 << bit):
            missing.append(name)
    return missing


def require_root() -> None:
    """PermissionProblem unless this process may probe (root with CAP_SYS_ADMIN, or CAP_BPF+CAP_PERFMON)."""
    missing = missing_privileges()
    if missing:
        raise PermissionProblem(
            f"probing needs root: running as uid {os.geteuid()} without {', '.join(missing)}",
            hint="run it with sudo (bpftrace and memleak load eBPF programs and attach uprobes)",
        )


# --- allocator symbols ---------------------------------------------------------------------------

ALLOC_FUNCTIONS = ALLOCATOR_FUNCTIONS


def elf_functions(path: str) -> dict[str, int]:
    """The allocator-related functions ``path`` defines (see ``allocator.wanted_symbols``): name -> address.

    Versioned names lose their ``@VERSION``. Returns {} for anything that is not a readable ELF file.
    """
    elf = allocator.read_elf(path)
    return dict(elf.functions) if elf is not None else {}


def allocator_functions(path: str) -> tuple[str, ...]:
    """The allocator functions ``path`` defines that the probes hook, one name per address.

    glibc's memalign and aligned_alloc are one function at one address: probing both would count
    every call twice (and pay the probe twice). See ``allocator.hooks_for``.
    """
    functions = elf_functions(path)
    return tuple(h.symbol for h in allocator.hooks_for(functions, allocator.prefix_of(functions)))
