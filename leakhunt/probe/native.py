"""The native backend: leakhunt's own BPF program (templates/probe/native.bpf.c.j2), run by BCC.

    /usr/bin/python3 leakhunt/probe/native_host.py -p PID /tmp/leakhunt-XXXX/native.json

leakhunt decides everything here, in its own Python: which functions to hook (``Hook``: a
function name and its ``Role``, a plain data structure that allocator detection can fill), where
each probe goes (``placement.place()``: the first instruction the kernel emulates, so a call costs
one cheap trap instead of a single step), and the program's constants (validated by
``scriptgen``). The host program (``native_host.py``, run by the system Python that has Debian's
python3-bpfcc) only compiles, attaches with ``pid=`` (the kernel fires the probes for the target
only: other processes calling malloc pay nothing) and prints the kernel's per-stack totals every
interval in a line format that ``leakhunt.parse.native`` reads.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from leakhunt.errors import LeakhuntError, TargetError, UsageError
from leakhunt.model import ALLOCATOR_FUNCTIONS, AllocatorInfo, BackendInfo, BackendName
from leakhunt.parse import LineParser, ParseStats
from leakhunt.parse.native import ATTACHED_PREFIX, STATUS_PREFIX, NativeParser
from leakhunt.probe import placement, runner, scriptgen, tools
from leakhunt.probe.backend import BaseBackend, ProbeCommand, ProbeOptions

HOST_STOPPED = "leakhunt-native: stopped"  # native_host.STOPPED: its last snapshot is out
HOST_TARGET_EXITED = "leakhunt-native: target exited"  # native_host.TARGET_EXITED
HOST_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_host.py")
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
MAX_STACKS = 16384  # distinct stacks (stack map and per-stack totals)
MAX_THREADS = 8192  # threads inside an allocator call at once
MAX_SAMPLE_BYTES = 1 << 28  # the program's fixed-point arithmetic holds sizes below 16 R
# Bytes of user stack copied per new stack with --unwind dwarf (perf --call-graph dwarf copies 8 KiB).
STACK_COPY = 8192

RoleKind = Literal["alloc", "calloc", "realloc", "reallocarray", "posix_memalign", "free"]


@dataclass(frozen=True)
class Role:
    """What a hooked function does, and where its arguments are.

    ``alloc``: returns a block of the size in argument ``size_arg`` (0-based: malloc 0, memalign 1);
    ``calloc``: nmemb * size; ``realloc``: (old pointer, size); ``reallocarray``: (old pointer,
    nmemb, size); ``posix_memalign``: (memptr, alignment, size), stores the block at *memptr;
    ``free``: releases argument 0.
    """

    kind: RoleKind
    size_arg: int = 0

    @property
    def program(self) -> str:
        """The BPF program attached at the function's entry."""
        if self.kind == "alloc":
            return f"lh_enter_alloc{self.size_arg}"
        return "lh_free" if self.kind == "free" else f"lh_enter_{self.kind}"

    @property
    def returns(self) -> bool:
        """True when the block is known only at return (a return probe is needed)."""
        return self.kind != "free"

    @property
    def reads(self) -> frozenset[str]:
        """The argument registers the entry program reads (x86-64 SysV)."""
        regs = ("rdi", "rsi", "rdx")
        used = {
            "alloc": (self.size_arg,),
            "calloc": (0, 1),
            "realloc": (0, 1),
            "reallocarray": (0, 1, 2),
            "posix_memalign": (0, 2),
            "free": (0,),
        }[self.kind]
        return frozenset(regs[i] for i in used)


ALLOC0 = Role("alloc", 0)
FREE = Role("free")

# Function name -> role, for the C allocator API and the C++ operators (Itanium mangling).
ROLES: dict[str, Role] = {
    "malloc": ALLOC0,
    "calloc": Role("calloc"),
    "realloc": Role("realloc"),
    "reallocarray": Role("reallocarray"),
    "posix_memalign": Role("posix_memalign"),
    "aligned_alloc": Role("alloc", 1),
    "memalign": Role("alloc", 1),
    "valloc": ALLOC0,
    "pvalloc": ALLOC0,
    "free": FREE,
    "cfree": FREE,
    "_Znwm": ALLOC0,  # operator new(size_t)
    "_Znam": ALLOC0,  # operator new[](size_t)
    "_ZnwmRKSt9nothrow_t": ALLOC0,
    "_ZnamRKSt9nothrow_t": ALLOC0,
    "_ZnwmSt11align_val_t": ALLOC0,
    "_ZnamSt11align_val_t": ALLOC0,
    "_ZdlPv": FREE,  # operator delete(void*)
    "_ZdaPv": FREE,
    "_ZdlPvm": FREE,  # sized delete
    "_ZdaPvm": FREE,
    "_ZdlPvSt11align_val_t": FREE,
    "_ZdaPvSt11align_val_t": FREE,
    "_ZdlPvmSt11align_val_t": FREE,
    "_ZdaPvmSt11align_val_t": FREE,
}


@dataclass(frozen=True)
class Hook:
    """One function to probe: ``function`` in the object ``path``, doing ``role``."""

    path: str
    function: str
    role: Role


@dataclass(frozen=True)
class PlacedHook:
    hook: Hook
    address: int  # ELF virtual address of the probed instruction
    placement: placement.Placement


def default_hooks(path: str, names: Iterable[str] = ALLOCATOR_FUNCTIONS) -> tuple[Hook, ...]:
    """Hooks for the allocator functions ``path`` defines, one per address (aliases dropped:
    glibc's memalign and aligned_alloc are one function, probing both would count twice)."""
    symbols = tools.elf_functions(path)
    seen: set[int] = set()
    hooks: list[Hook] = []
    for name in names:
        address = symbols.get(name)
        role = ROLES.get(name)
        if address is None or role is None or address in seen:
            continue
        seen.add(address)
        hooks.append(Hook(path, name, role))
    return tuple(hooks)


_ROLE_OF: dict[str, Role] = {
    "alloc0": ALLOC0,
    "alloc1": Role("alloc", 1),
    "calloc": Role("calloc"),
    "realloc": Role("realloc"),
    "reallocarray": Role("reallocarray"),
    "posix_memalign": Role("posix_memalign"),
    "free": FREE,
}


def hooks_from(allocator: AllocatorInfo, path: str) -> tuple[Hook, ...]:
    """The detected allocator's hook list (``probe.allocator``) as native hooks in ``path``
    (the allocator object as this host opens it)."""
    return tuple(Hook(path, h.symbol, _ROLE_OF[h.role]) for h in allocator.hooks)


def place_hooks(hooks: Iterable[Hook]) -> tuple[tuple[PlacedHook, ...], tuple[str, ...]]:
    """Each hook with its probe address, and a note for every probe that had to stay at offset 0."""
    placed: list[PlacedHook] = []
    notes: list[str] = []
    unsupported = placement.placement_supported()
    symbol_cache: dict[str, dict[str, int]] = {}
    for hook in hooks:
        symbols = symbol_cache.setdefault(hook.path, tools.elf_functions(hook.path))
        start = symbols.get(hook.function)
        if start is None:
            raise TargetError(f"{hook.path} does not define {hook.function}")
        if unsupported:
            where = placement.Placement(0, False, "", unsupported)
        else:
            code = placement.read_code(hook.path, start)
            where = placement.place(code, hook.role.reads, address=start)
        placed.append(PlacedHook(hook, start + where.offset, where))
        if not where.emulated:
            notes.append(
                f"probe on {hook.function} at its entry ('{where.instruction or '?'}' is executed "
                f"out of line: each call traps twice): {where.reason}"
            )
    return tuple(placed), tuple(notes)


def render_program(pid: int, options: ProbeOptions, programs: Iterable[str], *, launched: bool) -> str:
    """The BPF C program for ``pid`` with the entry programs ``programs`` (``Role.program`` names)."""
    kinds = tuple(
        scriptgen.identifier(p.removeprefix("lh_enter_"), "probe kind")
        for p in sorted(set(programs))
        if p.startswith("lh_enter_")
    )
    sample_bytes = options.sample_bytes or 0
    if sample_bytes > MAX_SAMPLE_BYTES:
        raise UsageError(f"--sample-bytes must be at most {MAX_SAMPLE_BYTES} (256M)")
    return scriptgen.render_bpf_c(
        "native",
        pid=scriptgen.positive_int(pid, "pid"),
        arm_on_exec=launched,
        min_size=scriptgen.positive_int(options.min_size or 0, "--min-size", allow_zero=True),
        max_size=scriptgen.positive_int(options.max_size or 0, "--max-size", allow_zero=True),
        sample_rate=scriptgen.positive_int(options.sample_rate, "--sample-rate"),
        sample_bytes=scriptgen.positive_int(sample_bytes, "--sample-bytes", allow_zero=True),
        max_blocks=scriptgen.positive_int(options.map_keys, "--map-keys"),
        max_stacks=MAX_STACKS,
        max_threads=MAX_THREADS,
        kinds=kinds,
        unwind_dwarf=options.unwind == "dwarf",
        stack_copy_chunks=STACK_COPY // 512,
    )


def find_host() -> tools.Tool | None:
    """The system Python that has BCC's module, as a Tool (version = BCC's), or None.

    ``LEAKHUNT_NATIVE_PYTHON=/path/to/python3`` picks that Python (set empty: not installed).
    """
    override = tools.env_override("LEAKHUNT_NATIVE_PYTHON")
    for path in (override,) if override is not None else SYSTEM_PYTHONS:
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            done = runner.run_capture([path, "-c", "import bcc; print(bcc.__version__)"], timeout=30)
        except LeakhuntError:  # it would not run: not usable
            continue
        if done.returncode == 0 and done.stdout.strip():
            return tools.Tool(path, done.stdout.strip().splitlines()[-1])
    return None


def unusable_reason() -> str | None:
    """Why the native backend cannot run here (None when it can)."""
    if not os.path.isfile(HOST_PROGRAM):
        return f"{HOST_PROGRAM} is missing"
    if tools.kernel_headers_dir() is None:
        return f"BCC needs kernel headers for {os.uname().release} to compile the program"
    return None


def command(
    tool: tools.Tool,
    pid: int,
    lib: str,
    options: ProbeOptions,
    *,
    workdir: str,
    reason: str,
    launched: bool = False,
    hooks: tuple[Hook, ...] | None = None,
) -> ProbeCommand:
    """The host program's command for ``pid``; writes the program and its configuration to ``workdir``.

    ``hooks``: the functions to probe (default: the allocator functions ``lib`` defines).
    """
    hooks = hooks if hooks is not None else default_hooks(lib)
    if not any(h.role.kind == "free" for h in hooks) or not any(h.role.returns for h in hooks):
        raise TargetError(
            f"{lib} defines no malloc or free",
            hint="pass --obj naming the library that holds the allocator (or the static binary)",
        )
    for hook in hooks:
        scriptgen.safe_path(hook.path, "allocator library")
        scriptgen.identifier(hook.function, "allocator function")
    placed, notes = place_hooks(hooks)
    source = render_program(pid, options, (h.role.program for h in hooks), launched=launched)
    source_path = os.path.join(workdir, "native.bpf.c")
    config_path = os.path.join(workdir, "native.json")
    config = {
        "pid": pid,
        "source": source_path,
        "interval_ms": scriptgen.positive_int(round(options.interval * 1000), "--interval (ms)"),
        "arm_now": not launched,
        "older_than_ns": (options.older_than_ms or 0) * 1_000_000,
        "sample_bytes": options.sample_bytes or 0,
        "unwind": options.unwind,
        "hooks": [
            {
                "path": p.hook.path,
                "symbol": p.hook.function,
                "address": p.address,
                "program": p.hook.role.program,
                "returns": p.hook.role.returns,
            }
            for p in placed
        ],
    }
    _write_private(source_path, source)
    _write_private(config_path, json.dumps(config, indent=1))
    argv = (tool.path, HOST_PROGRAM, "-p", str(pid), config_path)
    return ProbeCommand(
        info=BackendInfo(
            name="native",
            tool=f"{tool.path} {HOST_PROGRAM}",
            version=f"bcc {tool.version}",
            argv=argv,
            reason=reason,
        ),
        argv=argv,
        env=(("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")),
        new_parser=functools.partial(_parser, sample_bytes=options.sample_bytes or 0),
        attached=_attached,
        is_chatter=lambda line: line.startswith(STATUS_PREFIX),
        data_done=lambda line: line == HOST_STOPPED,
        target_exited=lambda line: line == HOST_TARGET_EXITED,
        script=source,
        max_tracked=options.map_keys,
        notes=notes,
    )


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _parser(stats: ParseStats, *, sample_bytes: int) -> LineParser:
    return NativeParser(stats, sample_bytes=sample_bytes)


def _attached(line: str | None, stderr: str, pid: int) -> bool:
    return line is not None and line.startswith(ATTACHED_PREFIX)


@dataclass(frozen=True)
class NativeBackend(BaseBackend):
    """leakhunt's own BPF program run by BCC (see ``leakhunt.probe.backend.Backend``); ``tool`` is
    the system Python with BCC's module (version = BCC's)."""

    name: BackendName = "native"
    attach_timeout: float = 120.0  # BCC compiles the program with clang first: slow on a busy host
    byte_sampling: bool = True
    trace_refusal: ClassVar[str] = "the native backend has no per-call trace"

    def investigate(
        self,
        pid: int | None,
        options: ProbeOptions,
        *,
        script_path: str,
        launched: bool,
        allocator: AllocatorInfo | None = None,
    ) -> ProbeCommand:
        """The host program probing ``allocator`` (detected by ``probe.allocator``; None: the C
        library ``pid`` maps, or ``--obj``); it writes its program and configuration next to
        ``script_path``."""
        if options.mode != "alloc" or pid is None:
            raise UsageError(
                f"the native backend does not do --mode {options.mode}", hint="use --backend bpftrace"
            )
        lib = tools.probed_object(pid, options.obj, allocator, launched=launched)
        hooks = hooks_from(allocator, lib) if allocator is not None else None
        return command(
            self.tool, pid, lib, options, workdir=os.path.dirname(script_path), reason=self.reason,
            launched=launched, hooks=hooks,
        )  # fmt: skip
