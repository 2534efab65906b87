"""Allocator detection (leakhunt.probe.allocator): pure parsers on captured /proc and ld.so output,
the choice rules on symbol tables, the real Debian allocator libraries, and the plausibility check."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt import procfs
from leakhunt.analyze.coverage import missed_allocations
from leakhunt.analyze.stacks import analyze_snapshots, attribute
from leakhunt.errors import TargetError, ToolMissing, UsageError
from leakhunt.model import (
    AllocatorHook,
    AllocatorInfo,
    Frame,
    MemSample,
    Snapshot,
    Stack,
    StackSample,
)
from leakhunt.probe import allocator, memleak, tools
from leakhunt.probe.allocator import ElfSymbols
from leakhunt.probe.backend import ProbeOptions
from leakhunt.report import jsonio, render_bytes
from tests.conftest import IN_CI, diff_fixture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alloc"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
JEMALLOC = LIBDIR / "libjemalloc.so.2"
TCMALLOC = LIBDIR / "libtcmalloc_minimal.so.4"
MIMALLOC = LIBDIR / "libmimalloc.so.2"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


# --- parsers ------------------------------------------------------------------------------------


def test_maps_give_one_entry_per_file_in_address_order() -> None:
    maps = allocator.parse_maps(lines("maps-jemalloc-linked.txt"))
    paths = [m.path for m in maps]
    assert len(paths) == len(set(paths))
    assert all(p.startswith("/") for p in paths)
    assert not any("[heap]" in p or "[vdso]" in p for p in paths)
    assert [m.start for m in maps] == sorted(m.start for m in maps)
    assert any(p.endswith("/libjemalloc.so.2") for p in paths)
    assert paths[0].endswith("alloc_leaker-jemalloc")  # the executable is mapped lowest


def test_deleted_mappings_are_kept_and_flagged() -> None:
    maps = allocator.parse_maps(
        ["7f00-7f10 r-xp 00000000 08:01 12 /usr/lib/libjemalloc.so.2 (deleted)", "garbage", ""]
    )
    assert maps == [allocator.Mapping_(0x7F00, "/usr/lib/libjemalloc.so.2", True)]


def test_ldso_list_keeps_the_load_order_and_drops_the_vdso() -> None:
    order = allocator.parse_ldso_list(lines("ldso-list-redis.txt"))
    names = [os.path.basename(p) for p in order]
    assert "linux-vdso.so.1" not in names
    assert names.index("libjemalloc.so.2") < names.index("libc.so.6")
    preload = allocator.parse_ldso_list(lines("ldso-list-mimalloc-preload.txt"))
    assert os.path.basename(preload[0]).startswith("libmimalloc.so")
    assert [os.path.basename(p) for p in preload[1:]] == ["libc.so.6", "ld-linux-x86-64.so.2"]


def test_preload_and_environ() -> None:
    assert allocator.parse_preload(" /a/libx.so:liby.so  libz.so ") == ["/a/libx.so", "liby.so", "libz.so"]
    assert allocator.parse_preload(None) == []
    env = b"PATH=/bin\0LD_PRELOAD=/usr/lib/libjemalloc.so.2\0X=LD_PRELOAD=no\0"
    assert procfs.environ_value(env, "LD_PRELOAD") == "/usr/lib/libjemalloc.so.2"
    assert procfs.environ_value(env, "HOME") is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=30), st.binary(max_size=300))
def test_parsers_never_raise(text: list[str], blob: bytes) -> None:
    allocator.parse_maps(text)
    allocator.parse_ldso_list(text)
    allocator.parse_preload("".join(text))
    procfs.environ_value(blob, "LD_PRELOAD")


# --- load order and choice ----------------------------------------------------------------------


def elf(path: str, *functions: str, needed: tuple[str, ...] = (), soname: str | None = None) -> ElfSymbols:
    return ElfSymbols(
        path=path,
        functions={name: 0x1000 + i * 16 for i, name in enumerate(functions)},
        soname=soname,
        needed=needed,
        interp="/lib64/ld-linux-x86-64.so.2" if soname is None else None,
    )


def test_load_order_is_exe_preload_then_needed_breadth_first() -> None:
    objs = {
        "/app": elf("/app", needed=("libfoo.so.1", "libc.so.6")),
        "/lib/libfoo.so.1": elf("/lib/libfoo.so.1", needed=("libjemalloc.so.2",), soname="libfoo.so.1"),
        "/lib/libjemalloc.so.2": elf("/lib/libjemalloc.so.2", soname="libjemalloc.so.2"),
        "/lib/libc.so.6": elf("/lib/libc.so.6", soname="libc.so.6"),
        "/lib/libtcmalloc_minimal.so.4.5.10": elf(
            "/lib/libtcmalloc_minimal.so.4.5.10", soname="libtcmalloc_minimal.so.4"
        ),
        "/lib/plugin.so": elf("/lib/plugin.so", soname="plugin.so"),
    }
    mapped = sorted(objs)  # address order says nothing about load order
    order = allocator.load_order("/app", mapped, ["libtcmalloc_minimal.so.4"], objs.get)
    assert order == [
        "/app",
        "/lib/libtcmalloc_minimal.so.4.5.10",  # LD_PRELOAD, matched by its SONAME
        "/lib/libfoo.so.1",
        "/lib/libc.so.6",  # breadth first: the executable's needs before libfoo's
        "/lib/libjemalloc.so.2",
        "/lib/plugin.so",  # not needed by anyone: dlopen'd, last
    ]


def test_the_first_object_defining_malloc_is_the_allocator() -> None:
    exe = elf("/app")
    jemalloc = elf("/lib/libjemalloc.so.2", "malloc", "free", "mallctl", "_Znwm", soname="libjemalloc.so.2")
    libc = elf("/lib/libc.so.6", "malloc", "free", "gnu_get_libc_version", soname="libc.so.6")
    found = allocator.choose_allocator([exe, jemalloc, libc])
    assert (found.name, found.path, found.prefix, found.how) == (
        "jemalloc",
        "/lib/libjemalloc.so.2",
        "",
        "linked",
    )
    assert found.cxx_hooked
    assert allocator.choose_allocator([exe, libc]).name == "glibc"
    preloaded = allocator.choose_allocator([exe, jemalloc, libc], preload=["/lib/libjemalloc.so.2"])
    assert preloaded.how == "LD_PRELOAD"


def test_a_prefixed_static_allocator_in_the_executable_wins_over_libc() -> None:
    exe = ElfSymbols(
        "/usr/bin/redis-server",
        {"je_malloc": 1, "je_free": 2, "je_calloc": 3, "je_realloc": 4, "je_mallctl": 5},
    )
    libc = elf("/lib/libc.so.6", "malloc", "free", "gnu_get_libc_version", soname="libc.so.6")
    found = allocator.choose_allocator([exe, libc])
    assert (found.name, found.prefix, found.how) == ("jemalloc", "je_", "static in the executable")
    assert [h.symbol for h in found.hooks] == ["je_malloc", "je_calloc", "je_realloc", "je_free"]


def test_no_allocator_at_all_is_an_error() -> None:
    with pytest.raises(TargetError, match="defines malloc"):
        allocator.choose_allocator([elf("/app"), elf("/lib/libm.so.6", soname="libm.so.6")])


def test_aliases_are_hooked_once_with_their_role() -> None:
    # tcmalloc: free, _ZdlPv, tc_free share one address; malloc and _Znwm do not
    hooks = allocator.hooks_for(
        {"malloc": 1, "free": 2, "_ZdlPv": 2, "tc_delete": 2, "_Znwm": 3, "calloc": 4}
    )
    assert hooks == (
        AllocatorHook("malloc", "alloc0"),
        AllocatorHook("calloc", "calloc"),
        AllocatorHook("free", "free"),
        AllocatorHook("_Znwm", "alloc0"),
    )


def test_fingerprints_and_versions() -> None:
    assert allocator.fingerprint({"tc_version": 1}, "", "/x/libtcmalloc.so.4") == "tcmalloc"
    assert allocator.fingerprint({"mi_version": 1}, "", "/x/libmimalloc.so.2") == "mimalloc"
    assert allocator.fingerprint({"malloc": 1}, "", "/x/libc.so.6") == "glibc"
    assert allocator.fingerprint({"malloc": 1}, "", "/x/libweird.so") == "unknown"
    assert (
        allocator.version_of("jemalloc", "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c", "x") == "5.3.0"
    )
    assert allocator.version_of("tcmalloc", "gperftools 2.10", "x") == "2.10"
    assert allocator.version_of("mimalloc", None, "/x/libmimalloc.so.2.0") == "2.0"
    assert allocator.version_of("glibc", None, "/x/libc.so.6") is None


# --- the real libraries (installed by scripts/setup.sh --with-test-tools) -----------------------


def need(path: Path) -> None:
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} missing: scripts/setup.sh --with-test-tools installs it")
        pytest.skip(f"{path} not installed")


@pytest.mark.parametrize(
    ("path", "name", "version"),
    [(JEMALLOC, "jemalloc", "5.3"), (TCMALLOC, "tcmalloc", "2."), (MIMALLOC, "mimalloc", "2")],
)
def test_debian_allocators_are_recognised_with_cxx_operators(path: Path, name: str, version: str) -> None:
    need(path)
    elf_ = allocator.read_elf(str(path))
    assert elf_ is not None
    info = allocator.from_object(elf_)
    assert info.name == name
    assert (info.version or "").startswith(version)
    roles = {h.symbol: h.role for h in info.hooks}
    assert roles["malloc"] == "alloc0" and roles["free"] == "free"
    assert info.cxx_hooked
    # one symbol per address
    addresses = [elf_.functions[h.symbol] for h in info.hooks]
    assert len(addresses) == len(set(addresses))


def test_the_c_library_and_this_process() -> None:
    found = allocator.detect_pid(os.getpid())
    assert found.name in ("glibc", "musl", "jemalloc", "tcmalloc", "mimalloc")
    assert {"malloc", "free"} <= {h.symbol for h in found.hooks}
    assert tools.allocator_functions(found.path)[:1] == ("malloc",)


def test_detect_command_follows_ld_preload_and_refuses_what_is_not_elf(tmp_path: Path) -> None:
    need(TCMALLOC)
    true = "/bin/true"
    found = allocator.detect_command([true], {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(TCMALLOC)})
    assert (found.name, found.how) == ("tcmalloc", "LD_PRELOAD")
    assert allocator.detect_command([true], {"PATH": "/usr/bin:/bin"}).name == "glibc"
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/true\n")
    script.chmod(0o755)
    assert allocator.detect_command([str(script)], {"PATH": "/bin"}).name == "glibc"  # via its #! line
    data = tmp_path / "data.bin"
    data.write_bytes(b"not an ELF")
    with pytest.raises(TargetError, match="not an ELF"):
        allocator.detect_command([str(data)], {"PATH": "/bin"})


def test_obj_by_name_for_a_command_not_started_yet() -> None:
    need(JEMALLOC)
    redis = "/usr/bin/redis-server"
    if not Path(redis).exists():
        need(Path(redis))
    found = allocator.detect_object("jemalloc", argv=[redis])
    assert (found.name, found.how) == ("jemalloc", "--obj")
    with pytest.raises(UsageError, match="maps no such library"):
        allocator.detect_object("nosuchlib", argv=[redis])


# --- memleak: what the installed version can hook ----------------------------------------------


def fake_memleak(tmp_path: Path, text: str) -> tools.Tool:
    path = tmp_path / f"memleak-{len(list(tmp_path.iterdir()))}"
    path.write_text("#!/usr/bin/python3\n" + text)
    return tools.Tool(str(path), "0.26.0", "bcc")


def test_memleak_026_cannot_probe_jemalloc_and_says_so(tmp_path: Path) -> None:
    need(JEMALLOC)
    old = fake_memleak(tmp_path, 'attach_probes("mmap")\n')
    elf_ = allocator.read_elf(str(JEMALLOC))
    assert elf_ is not None
    info = allocator.from_object(elf_)
    with pytest.raises(ToolMissing, match="mmap, munmap"):
        memleak.check_allocator(old, info, str(JEMALLOC))
    new = fake_memleak(tmp_path, 'attach_probes("mmap", can_fail=True)\n"--symbols-prefix"\n')
    notes = memleak.check_allocator(new, info, str(JEMALLOC))
    assert any("operator new" in n for n in notes)
    argv = memleak.argv_for(new, 7, ProbeOptions(), info, str(JEMALLOC))
    assert argv[argv.index("-O") + 1] == str(JEMALLOC)
    prefixed = AllocatorInfo("jemalloc", "/usr/bin/redis-server", None, "je_", info.hooks)
    with pytest.raises(ToolMissing, match="symbols-prefix"):
        memleak.check_allocator(old, prefixed, str(JEMALLOC))


def test_memleak_probes_tcmalloc_but_not_its_operator_new(tmp_path: Path) -> None:
    need(TCMALLOC)
    old = fake_memleak(tmp_path, 'attach_probes("mmap")\n')
    elf_ = allocator.read_elf(str(TCMALLOC))
    assert elf_ is not None
    notes = memleak.check_allocator(old, allocator.from_object(elf_), str(TCMALLOC))
    assert any("_Znwm" in n and "not seen" in n for n in notes)


# --- nested calls: allocator-internal frames ----------------------------------------------------


def fr(symbol: str, module: str) -> Frame:
    return Frame(symbol, 0x10, module)


def test_allocator_internal_frames_are_trimmed_to_the_program() -> None:
    nested = Stack((fr("sysmalloc_mmap", "libc.so.6"), fr("_int_memalign", "libc.so.6"), fr("main", "app")))
    assert attribute(nested) == (Stack((fr("main", "app"),)), False)
    jemalloc = Stack((Frame("0x7f88396a57ba", None, "libjemalloc.so.2"), fr("handler", "app")))
    assert attribute(jemalloc)[0].frames[0].symbol == "handler"
    stdio = Stack((fr("_IO_file_doallocate", "libc.so.6"), fr("main", "app")))
    assert attribute(stdio) == (stdio, False)  # libc, but not the allocator
    only = Stack((fr("sysmalloc_mmap", "libc.so.6"), Frame("[unknown]")))
    assert attribute(only) == (only, True)


def test_allocator_only_stacks_never_outrank_the_programs_leak() -> None:
    program = Stack((fr("leak_here", "app"), fr("main", "app")))
    inside = Stack((fr("sysmalloc_mmap", "libc.so.6"), Frame("[unknown]")))
    snaps = [
        Snapshot(
            t=float(t),
            stacks=(StackSample(program, 1000 * t, t), StackSample(inside, 1_069_056 * t, t)),
        )
        for t in range(1, 7)
    ]
    findings = analyze_snapshots(snaps)
    assert findings[0].stack == program and findings[0].verdict == "leak"
    assert findings[1].stack == inside and "allocator-internal" in findings[1].reason


def test_a_nested_record_merges_with_the_outer_one() -> None:
    outer = Stack((fr("leak_here", "app"),))
    nested = Stack((fr("sysmalloc_mmap", "libc.so.6"), fr("leak_here", "app")))
    snaps = [
        Snapshot(t=float(t), stacks=(StackSample(outer, 100 * t, t), StackSample(nested, 1000 * t, t)))
        for t in range(1, 6)
    ]
    findings = analyze_snapshots(snaps)
    assert len(findings) == 1 and findings[0].outstanding_bytes == 5500


# --- plausibility -------------------------------------------------------------------------------

MIB = 1024 * 1024


def mem(t: float, anon: int) -> MemSample:
    return MemSample(t=t, rss=anon + MIB, vms=10 * anon + 100 * MIB, shared=MIB)


def snap(t: float, outstanding: int) -> Snapshot:
    stacks = (StackSample(Stack((fr("f", "app"),)), outstanding, 1),) if outstanding else ()
    return Snapshot(t=t, stacks=stacks)


def test_growth_the_probes_did_not_see_is_named() -> None:
    memory = [mem(t, 10 * MIB + t * MIB) for t in range(11)]
    jemalloc = AllocatorInfo("jemalloc", "/lib/libjemalloc.so.2", "5.3.0", "", (), "linked")
    libc = AllocatorInfo("glibc", "/lib/libc.so.6", "2.36", "", (), "--obj")
    text = missed_allocations(memory, [snap(10, 0)], probed=libc, really=jemalloc)
    assert "grew by 10.0 MiB" in text and "saw 0 B" in text
    assert "allocator jemalloc (libjemalloc.so.2) not hooked (--obj named libc.so.6)" in text
    # what the probes saw explains the growth: nothing to say
    assert missed_allocations(memory, [snap(10, 9 * MIB)], probed=jemalloc) == ""
    # small growth is never judged; sampling scales what was seen
    assert missed_allocations([mem(0, MIB), mem(5, 2 * MIB)], [snap(5, 0)]) == ""
    assert missed_allocations(memory, [snap(10, MIB)], sample_rate=10) == ""
    assert "saw 1.0 MiB" in missed_allocations(memory, [snap(10, MIB)])
    # an allocator's reserve (tcmalloc took 3.9 MiB for 765 KiB of blocks in CI) is not a miss
    reserve = [mem(0, 10 * MIB), mem(8, 10 * MIB + 39 * MIB // 10)]
    assert missed_allocations(reserve, [snap(8, 765 * 1024)]) == ""
    gap = "memleak hooks only the C allocator functions"
    assert gap in missed_allocations(memory, [snap(10, 0)], probed=jemalloc, backend_gaps=[gap])


# --- reports ------------------------------------------------------------------------------------


def test_reports_show_the_allocator_and_the_missed_growth_escaped() -> None:
    base = diff_fixture("investigation-v1.json")
    evil = AllocatorInfo("jemalloc", "/opt/<script>alert(1)</script>/libjemalloc.so.2", "5.3.0", "", (
        AllocatorHook("malloc", "alloc0"), AllocatorHook("free", "free")), "LD_PRELOAD")  # fmt: skip
    missed = "the process's anonymous memory grew by 9.0 MiB while the probes saw 0 B <b>"
    inv = replace(base, allocator=evil, findings=(), quality=replace(base.quality, missed_allocations=missed))
    html = render_bytes(inv, "html").decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "Not a clean result" in html and "&lt;b&gt;" in html
    md = render_bytes(inv, "md").decode()
    assert "| Allocator | jemalloc 5.3.0" in md
    back = jsonio.loads(jsonio.dumps(inv))
    assert isinstance(back, type(inv)) and back.allocator == evil
    assert back.quality.missed_allocations == missed
