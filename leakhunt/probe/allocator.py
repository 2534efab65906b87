"""Which allocator does a process really use, and which of its functions must the probes hook?

A service linked with jemalloc, tcmalloc or mimalloc (or run with one in LD_PRELOAD) never calls
glibc's malloc: probing libc then sees nothing and reports a false all-clear. The dynamic loader
binds ``malloc`` to the first object in its global scope that defines it: the executable, then
LD_PRELOAD libraries, then DT_NEEDED libraries breadth-first. This module rebuilds that order

- for a running process from ``/proc/PID/maps`` (lines like
  ``7f3a1c000000-7f3a1c0a3000 r-xp 00000000 08:01 1234  /usr/lib/x86_64-linux-gnu/libjemalloc.so.2``),
  its LD_PRELOAD and the objects' DT_NEEDED entries, reading files through /proc/PID/root so that a
  process in a container is read in its own file system;
- for a command ``leakhunt run`` is about to start, from the loader's own answer
  (``ld.so --list EXE``, which maps the libraries without running any of their code),

then takes the first object that defines ``malloc`` (a statically linked allocator with prefixed
names, ``je_malloc`` in a bundled jemalloc, wins when the executable defines it), fingerprints it by
marker symbols (``mallctl`` = jemalloc, ``tc_version`` / ``MallocExtension_*`` = tcmalloc,
``mi_version`` = mimalloc) and lists the functions it defines that the probes hook, C++ operator
new/delete (plain, sized, aligned, nothrow) included, one symbol per address.

The parsers (``parse_maps``, ``parse_ldso_list``, ``load_order``, ``choose_allocator``,
``hooks_for``) are pure; ``read_elf`` and the ``detect_*`` functions are the thin readers.
ELF symbol tables are read with pyelftools.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.hash import ELFHashSection, GNUHashSection
from elftools.elf.sections import Symbol, SymbolTableSection
from elftools.elf.segments import InterpSegment

from leakhunt import procfs
from leakhunt.errors import LeakhuntError, TargetError, UsageError
from leakhunt.model import AllocatorHook, AllocatorInfo, AllocatorRole
from leakhunt.probe import runner
from leakhunt.symbols.maps import host_path

# --- the functions probes hook ------------------------------------------------------------------

# C allocator entry points and their roles (plain names; a prefixed build adds its prefix).
C_FUNCTIONS: tuple[tuple[str, AllocatorRole], ...] = (
    ("malloc", "alloc0"),
    ("calloc", "calloc"),
    ("realloc", "realloc"),
    ("reallocarray", "reallocarray"),
    ("posix_memalign", "posix_memalign"),
    ("aligned_alloc", "alloc1"),
    ("memalign", "alloc1"),
    ("valloc", "alloc0"),
    ("pvalloc", "alloc0"),
    ("free", "free"),
    ("cfree", "free"),
    # jemalloc's non-standard API (redis' defragmenter, Rust's jemallocator)
    ("mallocx", "alloc0"),
    ("rallocx", "realloc"),
    ("dallocx", "free"),
    ("sdallocx", "free"),
)

# C++ operator new/delete (Itanium ABI, 64-bit size_t): plain, nothrow, aligned, sized.
CXX_FUNCTIONS: tuple[tuple[str, AllocatorRole], ...] = (
    ("_Znwm", "alloc0"),
    ("_Znam", "alloc0"),
    ("_ZnwmRKSt9nothrow_t", "alloc0"),
    ("_ZnamRKSt9nothrow_t", "alloc0"),
    ("_ZnwmSt11align_val_t", "alloc0"),
    ("_ZnamSt11align_val_t", "alloc0"),
    ("_ZnwmSt11align_val_tRKSt9nothrow_t", "alloc0"),
    ("_ZnamSt11align_val_tRKSt9nothrow_t", "alloc0"),
    ("_ZdlPv", "free"),
    ("_ZdaPv", "free"),
    ("_ZdlPvm", "free"),
    ("_ZdaPvm", "free"),
    ("_ZdlPvRKSt9nothrow_t", "free"),
    ("_ZdaPvRKSt9nothrow_t", "free"),
    ("_ZdlPvSt11align_val_t", "free"),
    ("_ZdaPvSt11align_val_t", "free"),
    ("_ZdlPvmSt11align_val_t", "free"),
    ("_ZdaPvmSt11align_val_t", "free"),
    ("_ZdlPvSt11align_val_tRKSt9nothrow_t", "free"),
    ("_ZdaPvSt11align_val_tRKSt9nothrow_t", "free"),
)

# The allocators' own APIs that programs call directly (mimalloc's mi_*, gperftools' tc_*); most
# are aliases of the plain names (dropped then), the others are hooked so direct callers count.
OWN_FUNCTIONS: tuple[tuple[str, AllocatorRole], ...] = (
    ("tc_new", "alloc0"),
    ("tc_newarray", "alloc0"),
    ("tc_new_nothrow", "alloc0"),
    ("tc_delete", "free"),
    ("tc_deletearray", "free"),
    ("tc_delete_sized", "free"),
    ("mi_new", "alloc0"),
    ("mi_new_nothrow", "alloc0"),
    ("mi_new_aligned", "alloc0"),
    ("mi_zalloc", "alloc0"),
    ("mi_malloc_aligned", "alloc0"),
    ("mi_zalloc_aligned", "alloc0"),
    ("mi_mallocn", "calloc"),
    ("mi_calloc_aligned", "calloc"),
    ("mi_reallocn", "reallocarray"),
    ("mi_realloc_aligned", "realloc"),
    ("mi_free_size", "free"),
    ("mi_free_aligned", "free"),
    ("mi_free_size_aligned", "free"),
)

PREFIXES: tuple[str, ...] = ("je_", "tc_", "mi_")


@dataclass(frozen=True)
class ElfSymbols:
    """What detection needs from one ELF object."""

    path: str  # as the target sees it
    functions: Mapping[str, int] = field(default_factory=dict)  # defined functions: name -> address
    soname: str | None = None
    needed: tuple[str, ...] = ()
    interp: str | None = None  # PT_INTERP of an executable
    version_text: str | None = None  # a version string found in the file (jemalloc, tcmalloc, glibc)


# --- pure parsers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping_:
    start: int
    path: str
    deleted: bool = False


def parse_maps(lines: Iterable[str] | str) -> list[Mapping_]:
    """File-backed mappings of /proc/PID/maps, one per file (its lowest address), in address order.

    Pseudo mappings (``[heap]``, ``[vdso]``, anonymous, ``memfd:``) are left out. A path that ends
    in `` (deleted)`` is kept with ``deleted=True`` (the file was replaced under the process).
    """
    seen: dict[str, Mapping_] = {}
    for entry in procfs.parse_maps(lines):
        if not entry.is_file:
            continue
        if entry.path not in seen or entry.start < seen[entry.path].start:
            seen[entry.path] = Mapping_(entry.start, entry.path, entry.deleted)
    return sorted(seen.values(), key=lambda m: m.start)


_LDSO_ARROW = re.compile(r"^\s*(\S+)\s+=>\s+(/\S*)\s+\(0x[0-9a-fA-F]+\)\s*$")
_LDSO_PATH = re.compile(r"^\s*(/\S*)\s+\(0x[0-9a-fA-F]+\)\s*$")


def parse_ldso_list(lines: Iterable[str]) -> list[str]:
    """The objects ``ld.so --list EXE`` (ldd) prints, in its order (the load order).

    ``libjemalloc.so.2 => /lib/x86_64-linux-gnu/libjemalloc.so.2 (0x7f..)`` and a preloaded
    ``/usr/lib/.../libmimalloc.so.2 (0x7f..)`` give their paths; the vDSO and "not found" give none.
    """
    found: list[str] = []
    for line in lines:
        m = _LDSO_ARROW.match(line) or _LDSO_PATH.match(line)
        if m is None:
            continue
        path = m.group(m.lastindex or 1)
        if path not in found:
            found.append(path)
    return found


def parse_preload(value: str | None) -> list[str]:
    """LD_PRELOAD's entries (separated by spaces or colons, as the loader reads them)."""
    if not value:
        return []
    return [p for p in re.split(r"[\s:]+", value) if p]


def load_order(
    exe: str | None,
    mapped: Sequence[str],
    preload: Sequence[str],
    info: Callable[[str], ElfSymbols | None],
) -> list[str]:
    """The mapped objects in the loader's symbol-lookup order.

    The executable, then LD_PRELOAD entries, then DT_NEEDED breadth-first (each name matched to a
    mapped object by SONAME or file name), then whatever else is mapped (dlopen'd, by address).
    """
    by_name: dict[str, str] = {}
    for path in mapped:
        by_name.setdefault(os.path.basename(path), path)
        elf = info(path)
        if elf is not None and elf.soname:
            by_name.setdefault(elf.soname, path)
    order: list[str] = []

    def add(path: str | None) -> None:
        if path is not None and path in mapped and path not in order:
            order.append(path)

    add(exe)
    for entry in preload:
        add(entry if entry in mapped else by_name.get(os.path.basename(entry)))
    queue = list(order)
    while queue:
        elf = info(queue.pop(0))
        for name in elf.needed if elf is not None else ():
            found = by_name.get(os.path.basename(name))
            if found is not None and found not in order:
                order.append(found)
                queue.append(found)
    for path in mapped:
        add(path)
    return order


def hooks_for(functions: Mapping[str, int], prefix: str = "") -> tuple[AllocatorHook, ...]:
    """The functions to hook among ``functions`` (an object's definitions), one per address.

    The C entry points (with ``prefix`` for a prefixed build), C++ operator new/delete and the
    allocator's own API, in that order; a name at an address already hooked is an alias (tcmalloc's
    ``free`` is ``_ZdlPv`` is ``tc_free``) and is dropped, so no call is counted twice.
    """
    table = [(prefix + name, role) for name, role in C_FUNCTIONS] + list(CXX_FUNCTIONS)
    table += list(OWN_FUNCTIONS)
    hooks: list[AllocatorHook] = []
    addresses: set[int] = set()
    for name, role in table:
        address = functions.get(name)
        if address is None or address in addresses:
            continue
        addresses.add(address)
        hooks.append(AllocatorHook(name, role))
    return tuple(hooks)


def fingerprint(functions: Mapping[str, int], prefix: str, path: str) -> str:
    """The allocator's name from its marker symbols (and, for the C libraries, its file name)."""
    base = os.path.basename(path)
    if prefix + "mallctl" in functions or "je_mallctl" in functions:
        return "jemalloc"
    if "tc_version" in functions or "MallocExtension_GetStats" in functions or prefix == "tc_":
        return "tcmalloc"
    if "mi_version" in functions or prefix == "mi_":
        return "mimalloc"
    if "gnu_get_libc_version" in functions or re.match(r"libc(\.so\.6|-[\d.]+\.so)$", base):
        return "glibc"
    if "musl" in base:
        return "musl"
    if "__libc_malloc" in functions:  # a static glibc (the allocators above define it too)
        return "glibc"
    return "unknown"


_VERSION_PATTERNS: dict[str, re.Pattern[str]] = {
    "jemalloc": re.compile(r"^(\d+\.\d+\.\d+)-\d+-g[0-9a-f]{6,40}$"),
    "tcmalloc": re.compile(r"^gperftools (\d+\.\d+(?:\.\d+)?)$"),
    "glibc": re.compile(r"release version (\d+\.\d+(?:\.\d+)?)"),
}


def version_of(name: str, version_text: str | None, path: str) -> str | None:
    """The allocator's version from a string found in its file, else from its file name."""
    pattern = _VERSION_PATTERNS.get(name)
    if pattern is not None and version_text:
        m = pattern.search(version_text)
        if m:
            return m.group(1)
    m = re.search(r"\.so\.(\d+(?:\.\d+)*)$", os.path.basename(path))
    if name == "mimalloc" and m:
        return m.group(1)
    return None


def choose_allocator(objects: Iterable[ElfSymbols], *, preload: Sequence[str] = ()) -> AllocatorInfo:
    """The allocator among ``objects`` (in load order, the executable first).

    The first object defining ``malloc`` binds every call; an object before it (the executable
    in practice) that defines a prefixed allocator (``je_malloc``) is the program's own allocator and
    wins. Raises TargetError when nothing defines an allocator (a stripped static binary).
    """
    owner: ElfSymbols | None = None
    prefix = ""
    position = -1
    for position, obj in enumerate(objects):  # noqa: B007 (position is used after the loop)
        prefix = prefix_of(obj.functions)
        if "malloc" in obj.functions or prefix:
            owner = obj
        if owner is not None:
            break
    if owner is None:
        raise TargetError(
            "no mapped object defines malloc (a stripped static binary?)",
            hint="pass --obj naming the binary or library that holds the allocator",
        )
    name = fingerprint(owner.functions, prefix, owner.path)
    if owner.path in preload:
        how = "LD_PRELOAD"
    elif position == 0 and owner.interp is None and not owner.soname:
        how = "static in the executable"
    elif position == 0:
        how = "in the executable"
    else:
        how = "linked"
    return AllocatorInfo(
        name=name,
        path=owner.path,
        version=version_of(name, owner.version_text, owner.path),
        prefix=prefix,
        hooks=hooks_for(owner.functions, prefix),
        how=how,
    )


def prefix_of(functions: Mapping[str, int]) -> str:
    """The prefix of an allocator that defines no plain malloc (``je_`` for je_malloc), else ""."""
    if "malloc" in functions:
        return ""
    return next((p for p in PREFIXES if p + "malloc" in functions and p + "free" in functions), "")


def from_object(elf: ElfSymbols, how: str = "--obj") -> AllocatorInfo:
    """The allocator in one object named by the user (``--obj``)."""
    prefix = prefix_of(elf.functions)
    name = fingerprint(elf.functions, prefix, elf.path)
    hooks = hooks_for(elf.functions, prefix)
    if not any(h.role == "free" for h in hooks) or not any(h.role != "free" for h in hooks):
        raise UsageError(
            f"--obj {elf.path} defines no malloc and free (nor je_/tc_/mi_ prefixed ones)",
            hint="name the library or the static binary that holds the allocator",
        )
    return AllocatorInfo(name, elf.path, version_of(name, elf.version_text, elf.path), prefix, hooks, how)


# --- readers ------------------------------------------------------------------------------------

_VERSION_BYTES = re.compile(
    rb"(\d+\.\d+\.\d+-\d+-g[0-9a-f]{40}|gperftools \d+\.\d+(?:\.\d+)?|release version \d+\.\d+(?:\.\d+)?)"
)


def wanted_symbols() -> frozenset[str]:
    """Every name detection looks at: hooked functions (all prefixes) and marker symbols."""
    names = {name for name, _ in CXX_FUNCTIONS + OWN_FUNCTIONS}
    for pre in ("", *PREFIXES):
        names |= {pre + name for name, _ in C_FUNCTIONS}
        names.add(pre + "mallctl")
    names |= set(_MARKERS)
    return frozenset(names)


_MARKERS = (
    "tc_version",
    "MallocExtension_GetStats",
    "mi_version",
    "gnu_get_libc_version",
    "__libc_malloc",
    "mmap",  # BCC memleak < 0.29 needs mmap and munmap in the allocator object
    "munmap",
)


def read_elf(path: str, shown_as: str | None = None, *, symbols: bool = True) -> ElfSymbols | None:
    """Defined functions, SONAME, DT_NEEDED and PT_INTERP of ``path`` (None: not a readable ELF file).

    ``shown_as`` is the path to record (the target's view, when ``path`` goes through
    /proc/PID/root). Only the names of ``wanted_symbols()`` are looked up, through the dynamic
    symbol hash table when there is one (libc has thousands of symbols); a static executable's
    .symtab is read whole. ``symbols=False`` reads the dynamic section only (load order).
    """
    functions: dict[str, int] = {}

    def keep(sym: Symbol | None, name: str) -> None:
        if sym is None or sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"):
            return
        if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
            functions.setdefault(name, int(sym["st_value"]))

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
            fh.seek(0)
            elf = ELFFile(fh)
            soname: str | None = None
            needed: list[str] = []
            hashed = False
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(str(tag.needed))  # type: ignore[attr-defined]
                        elif tag.entry.d_tag == "DT_SONAME":
                            soname = str(tag.soname)  # type: ignore[attr-defined]
                elif symbols and isinstance(section, GNUHashSection | ELFHashSection) and not hashed:
                    hashed = True
                    for name in wanted_symbols():
                        keep(section.get_symbol(name), name)
            if symbols:
                for section in elf.iter_sections():
                    if isinstance(section, SymbolTableSection) and (
                        section.name == ".symtab" or (section.name == ".dynsym" and not hashed)
                    ):
                        for sym in section.iter_symbols():
                            name = sym.name.split("@")[0]
                            if name not in functions:
                                keep(sym, name)
            interp: str | None = None
            for segment in elf.iter_segments():
                if isinstance(segment, InterpSegment):
                    interp = str(segment.get_interp_name())
    except (OSError, ELFError, ValueError, KeyError, AttributeError, UnicodeDecodeError):
        return None
    return ElfSymbols(
        path=shown_as or path,
        functions=functions,
        soname=soname,
        needed=tuple(needed),
        interp=interp,
        version_text=_version_text(path) if _may_hold_version(functions) else None,
    )


def _may_hold_version(functions: Mapping[str, int]) -> bool:
    return any(name in functions for name in ("mallctl", "je_mallctl", "tc_version", "gnu_get_libc_version"))


def _version_text(path: str) -> str | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    m = _VERSION_BYTES.search(data)
    return m.group(1).decode() if m else None


def detect_pid(pid: int) -> AllocatorInfo:
    """The allocator process ``pid`` uses (see the module docstring)."""
    try:
        maps = parse_maps(procfs.read_text(pid, "maps"))
    except procfs.Gone as err:
        raise TargetError(f"no process with pid {pid}") from err
    except procfs.ProcError as err:
        raise TargetError(
            f"cannot read /proc/{pid}/maps: {err.strerror}", hint="run leakhunt as root"
        ) from err
    try:
        exe: str | None = procfs.readlink(pid, "exe").removesuffix(" (deleted)")
    except procfs.ProcError:
        exe = None
    try:
        environ = procfs.read_bytes(pid, "environ")
    except procfs.ProcError:
        environ = b""
    preload = parse_preload(procfs.environ_value(environ, "LD_PRELOAD"))
    preload += _ld_so_preload(pid)
    mapped = [m.path for m in maps]
    dynamic: dict[str, ElfSymbols | None] = {}

    def info(path: str) -> ElfSymbols | None:
        if path not in dynamic:
            dynamic[path] = read_elf(host_path(pid, path), shown_as=path, symbols=False)
        return dynamic[path]

    order = load_order(exe, mapped, preload, info)
    preloaded = [p for p in order if _is_preload(p, preload, pid, info)]
    # symbol tables are read one object at a time, until the allocator is found
    objects = (e for e in (read_elf(host_path(pid, p), shown_as=p) for p in order) if e is not None)
    found = choose_allocator(objects, preload=preloaded)
    if any(m.deleted and m.path == found.path for m in maps):
        raise TargetError(
            f"pid {pid} maps an allocator that was deleted since it started ({found.path})",
            hint="the library was upgraded under the process; restart it, or pass --obj",
        )
    return found


def _is_preload(
    path: str, preload: Sequence[str], pid: int | None, info: Callable[[str], ElfSymbols | None]
) -> bool:
    """True when the mapped ``path`` is one of the LD_PRELOAD entries (a name, a symlink, a SONAME)."""
    elf = info(path)
    names = {os.path.basename(path), elf.soname if elf is not None else None}
    for entry in preload:
        if entry == path or os.path.basename(entry) in names:
            return True
        if os.path.isabs(entry) and os.path.realpath(host_path(pid, entry)) == os.path.realpath(
            host_path(pid, path)
        ):
            return True
    return False


def _ld_so_preload(pid: int | None) -> list[str]:
    try:
        text = Path(host_path(pid, "/etc/ld.so.preload")).read_text(errors="replace")
    except OSError:
        return []
    return parse_preload(text)


def resolve_command(argv0: str, env: Mapping[str, str]) -> str:
    """The ELF file a command runs: argv[0] on PATH, through ``#!`` interpreters (and env X)."""
    path: str = argv0 if os.sep in argv0 else _which(argv0, env)
    for _ in range(4):  # #! chains are short
        try:
            with open(path, "rb") as fh:
                head = fh.read(256)
        except OSError as err:
            raise TargetError(f"cannot read {path}: {err.strerror}") from err
        if not head.startswith(b"#!"):
            return os.path.realpath(path)
        words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
        if not words:
            return os.path.realpath(path)
        path = words[0]
        if os.path.basename(path) == "env" and len(words) > 1:
            path = _which(words[1], env)
    return os.path.realpath(path)


def _which(name: str, env: Mapping[str, str]) -> str:
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise TargetError(f"cannot find {name} on PATH")
    return found


def detect_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> AllocatorInfo:
    """The allocator a command will use once started (before it runs: ``leakhunt run``).

    Asks the dynamic loader (``ld.so --list``, with the command's LD_PRELOAD and LD_LIBRARY_PATH)
    which objects it would load, in order; a static executable is its only object.
    """
    env = dict(os.environ if env is None else env)
    exe = resolve_command(argv[0], env)
    elf = read_elf(exe)
    if elf is None:
        raise TargetError(f"{exe} is not an ELF executable leakhunt can read")
    paths = [exe]
    if elf.interp is not None:
        loader = elf.interp if os.path.isfile(elf.interp) else "/lib64/ld-linux-x86-64.so.2"
        keep = ("LD_PRELOAD", "LD_LIBRARY_PATH", "PATH")
        try:
            done = runner.run_capture(
                [loader, "--list", exe], timeout=20, env={k: env[k] for k in keep if k in env}
            )
        except LeakhuntError as err:
            raise TargetError(f"cannot list the libraries of {exe}: {err.message}") from err
        paths += [p for p in parse_ldso_list(done.stdout.splitlines()) if p != exe]
    preload = parse_preload(env.get("LD_PRELOAD")) + _ld_so_preload(None)

    def info(path: str) -> ElfSymbols | None:
        return read_elf(path, symbols=False)

    preloaded = [p for p in paths if _is_preload(p, preload, None, info)]
    objects = (e for e in (elf if p == exe else read_elf(p) for p in paths) if e is not None)
    return choose_allocator(objects, preload=preloaded)


def detect_object(obj: str, pid: int | None = None, argv: Sequence[str] | None = None) -> AllocatorInfo:
    """``--obj``: a path, or the name of a library the process maps (or, for ``run``, will load)."""
    candidates: list[str] = []
    if os.path.isabs(obj):
        candidates = [obj]
    elif pid is not None:
        try:
            candidates = [m.path for m in parse_maps(procfs.read_text(pid, "maps"))]
        except procfs.ProcError as err:
            raise TargetError(f"cannot read /proc/{pid}/maps") from err
    elif argv is not None:
        exe = resolve_command(argv[0], os.environ)
        elf = read_elf(exe)
        candidates = [exe]
        if elf is not None and elf.interp is not None:
            loader = elf.interp if os.path.isfile(elf.interp) else "/lib64/ld-linux-x86-64.so.2"
            done = runner.run_capture([loader, "--list", exe], timeout=20)
            candidates += parse_ldso_list(done.stdout.splitlines())
    chosen = obj if os.path.isabs(obj) else _match_name(obj, candidates)
    if chosen is None:
        raise UsageError(
            f"--obj {obj}: the target maps no such library",
            hint="give the library's path, or a name the target maps or links (jemalloc, libtcmalloc.so.4)",
        )
    elf = read_elf(host_path(pid, chosen), shown_as=chosen)
    if elf is None:
        raise UsageError(f"--obj {obj}: {chosen} is not a readable ELF file")
    return from_object(elf)


def _match_name(obj: str, paths: Sequence[str]) -> str | None:
    for path in paths:
        base = os.path.basename(path)
        if base == obj or base.startswith((f"lib{obj}.so", f"{obj}.so", f"lib{obj}_minimal.so")):
            return path
    return None


def essential_missing(info: AllocatorInfo) -> list[str]:
    """Roles every probe needs that ``info`` hooks nothing for ("allocation", "free")."""
    missing = []
    if not any(h.role != "free" for h in info.hooks):
        missing.append("allocation")
    if not any(h.role == "free" for h in info.hooks):
        missing.append("free")
    return missing


def detect(pid: int, command: Sequence[str] | None, obj: str | None) -> AllocatorInfo:
    """The allocator to probe: ``--obj`` when given, else the one the process uses (or, for a
    ``command`` held at its gate, the one it will use once started)."""
    if obj:
        return detect_object(obj, pid=None if command is not None else pid, argv=command)
    if command is not None:
        return detect_command(command)
    return detect_pid(pid)
