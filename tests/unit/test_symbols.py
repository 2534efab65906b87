"""Source lines and inlined calls from DWARF (leakhunt.symbols), on targets compiled here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import BackendInfo, Frame, Investigation, RunInfo, Snapshot, Stack, StackSample, Target
from leakhunt.symbols.elf import ElfObject
from leakhunt.symbols.maps import AddressSpace, parse_maps
from leakhunt.symbols.source import read_snippet
from leakhunt.symbols.symbolize import LiveSymbols, Symbolizer, symbolize_live

SRC = Path(__file__).resolve().parent.parent / "targets" / "unwind_leaker.c"


def _line_of(marker: str) -> int:
    for i, line in enumerate(SRC.read_text().splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(marker)


def _return_after_call(binary: Path, function: str, callee: str) -> int:
    """The link-time address after ``call <callee>`` in ``function`` (a return address)."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    body = text.split(f"<{function}>:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    for i, line in enumerate(body):
        if re.search(rf"call\s+\S+ <{re.escape(callee)}", line):
            return int(body[i + 1].split(":")[0], 16)
    raise AssertionError(f"no call to {callee} in {function}")


@pytest.fixture(scope="module")
def o2(build_target: Callable[..., Path]) -> Path:
    return build_target("unwind_leaker", flags=("-O2",))


def test_return_address_names_the_call_line_and_the_inlined_helper(o2: Path) -> None:
    obj = ElfObject(str(o2))
    ret = _return_after_call(o2, "parse_request", "malloc@plt")
    start = obj.symbol_value("parse_request")
    assert start is not None
    sym = Symbolizer(None)
    frames = sym.annotate(Frame("parse_request", ret - start, str(o2)))
    assert [f.symbol for f in frames] == ["make_buffer", "parse_request"]
    assert frames[0].inlined and not frames[1].inlined
    assert frames[0].line == _line_of("LEAK: request buffer")
    assert frames[1].line == _line_of("char *buf = make_buffer(id);")
    assert frames[1].display().endswith(f"(unwind_leaker.c:{frames[1].line})")
    assert frames[0].display() == f"make_buffer [{o2}] (unwind_leaker.c:{frames[0].line}, inlined)"
    assert frames[1].file is not None and Path(frames[1].file).resolve() == SRC


def test_frames_by_runtime_address_through_the_process_mappings(o2: Path) -> None:
    # the executable mapped at a made-up base, as /proc/PID/maps shows a PIE
    obj = ElfObject(str(o2))
    seg = next(s for s in obj.segments() if s.executable)
    base = 0x55D0C2A4B000
    line = f"{base:x}-{base + 0x10000:x} r-xp {seg.offset:08x} fe:01 1573026    {o2}"
    space = AddressSpace(parse_maps([line]))
    ret = _return_after_call(o2, "remember_name", "strdup@plt")
    runtime = base + ret - seg.vaddr
    frames = Symbolizer(space).frame_for_pc(runtime, is_return=True)
    assert frames[-1].symbol == "remember_name"
    assert frames[-1].line == _line_of("LEAK: strdup'ed name")
    assert frames[-1].address == runtime


def test_separate_debug_file_by_build_id(o2: Path, tmp_path: Path) -> None:
    if shutil.which("objcopy") is None:
        pytest.skip("objcopy not installed")
    stripped = tmp_path / "stripped"
    debug = tmp_path / "full.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(o2), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-debug", str(o2), str(stripped)], check=True)
    bid = ElfObject(str(stripped)).build_id()
    assert bid is not None
    where = tmp_path / "debug" / ".build-id" / bid[:2]
    where.mkdir(parents=True)
    shutil.move(debug, where / f"{bid[2:]}.debug")
    ret = _return_after_call(o2, "parse_request", "malloc@plt")
    assert ElfObject(str(stripped)).source_at(ret - 1) == ()  # no DWARF of its own, no debug dir
    obj = ElfObject(str(stripped), debug_dirs=(str(tmp_path / "debug"),))
    lines = obj.source_at(ret - 1)
    assert [s.function for s in lines] == ["make_buffer", "parse_request"]
    assert obj.debug_file == str(where / f"{bid[2:]}.debug")


def test_no_debug_info_is_noted_with_the_fix(o2: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "prog"
    subprocess.run(["objcopy", "--strip-debug", str(o2), str(stripped)], check=True)
    obj = ElfObject(str(stripped))
    start = obj.symbol_value("parse_request")
    assert start is not None
    sym = Symbolizer(None)
    stack = sym.annotate_stack(Stack((Frame("parse_request", 0x19, str(stripped)),)))
    assert stack.frames[0].file is None
    assert sym.quality_notes() == (
        f"no debug info for {stripped}: rebuild it with -g (or keep its separate .debug file)",
    )


def test_cfa_rules_from_eh_frame(o2: Path) -> None:
    obj = ElfObject(str(o2))
    start = obj.symbol_value("parse_request")
    assert start is not None
    entry = obj.cfa_rule(start)
    assert entry is not None and (entry.cfa_reg, entry.cfa_offset, entry.ra_offset) == (7, 8, -8)
    ret = _return_after_call(o2, "parse_request", "malloc@plt")
    inside = obj.cfa_rule(ret - 1)
    assert inside is not None and inside.cfa_reg == 7 and inside.cfa_offset > 8


def test_malformed_files_are_not_known_never_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    obj = ElfObject(str(junk))
    assert obj.source_at(0x1000) == ()
    assert obj.cfa_rule(0x1000) is None
    assert obj.function_at(0x1000) is None
    missing = ElfObject(str(tmp_path / "missing"))
    assert missing.source_at(0) == ()


def test_source_snippet_around_the_line_and_refusals(tmp_path: Path) -> None:
    line = _line_of("LEAK: request buffer")
    snip = read_snippet(str(SRC), line)
    assert snip.error == "" and snip.first_line == line - 3 and len(snip.lines) == 7
    assert "LEAK: request buffer" in snip.lines[3]
    assert read_snippet(str(tmp_path / "gone.c"), 3).error.startswith("source not readable here")
    secret = tmp_path / "secret.c"
    secret.write_text("int x;\n")
    secret.chmod(0o600)
    assert read_snippet(str(secret), 1).error == "not shown: the file is not readable by everybody"
    assert read_snippet("/etc/passwd", 1).error == "not shown: not a source file name"
    short = tmp_path / "short.c"
    short.write_text("int x;\n")
    short.chmod(0o644)
    assert "changed since the build" in read_snippet(str(short), 50).error


def test_stacks_annotated_while_the_probe_stops_give_the_same_investigation(o2: Path) -> None:
    """LiveSymbols looks the stacks seen so far up in a thread (while the probe stops); a stack
    seen only in the last snapshot is looked up afterwards: the result is symbolize_live's."""
    obj = ElfObject(str(o2))
    seg = next(s for s in obj.segments() if s.executable)
    base = 0x55D0C2A4B000
    maps = parse_maps([f"{base:x}-{base + 0x10000:x} r-xp {seg.offset:08x} fe:01 1573026    {o2}"])

    def stack(function: str, callee: str) -> Stack:
        start = obj.symbol_value(function)
        assert start is not None
        ret = _return_after_call(o2, function, callee)
        return Stack(
            (Frame(function, ret - start, str(o2), base + ret - seg.vaddr), Frame("main", 1, str(o2)))
        )

    early, late = stack("parse_request", "malloc@plt"), stack("remember_name", "strdup@plt")
    snaps = (
        Snapshot(t=0.0, stacks=(StackSample(early, 64, 1),)),
        Snapshot(t=1.0, stacks=(StackSample(early, 128, 2), StackSample(late, 32, 1))),
    )
    inv = Investigation(
        target=Target(pid=1, comm="t", cmdline=()),
        backend=BackendInfo(name="bpftrace", tool="bpftrace", version="0.17.0", argv=()),
        run=RunInfo(started_at="2026-12-01T12:00:00+00:00", duration_s=1.0),
        interval_s=1.0,
        snapshots=snaps,
        findings=analyze_snapshots(snaps),
    )
    symbols = LiveSymbols(maps)
    symbols.start([early])
    got = symbols.investigation(inv)
    assert set(symbols.known) == {early}
    assert got == symbolize_live(inv, maps)
    tops = {f.stack.frames[0].symbol for f in got.findings}
    assert {"make_buffer", "remember_name"} <= tops  # the inlined helper, from the source lines


# --- symbolic's symcache against pyelftools' DIE walk ---------------------------------------------


def _every_address(obj: ElfObject, step: int = 1) -> list[int]:
    """Addresses inside every sized function of ``obj``'s symbol table."""
    _, syms = obj._symbol_table()
    return [a for start, size, _ in syms if size > 0 for a in range(start, start + size, step)]


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("unwind_leaker", ("-O2",)),  # C, inlined helpers
        ("unwind_leaker", ("-O0", "-gdwarf-4")),
        ("unwind_leaker", ("-O2", "-no-pie")),  # a fixed image base (0x400000)
        ("cpp_leaker", ("-O2", "-fno-omit-frame-pointer")),  # C++: std::map inlined 5 deep, .cold parts
    ],
)
def test_the_symcache_finds_what_the_die_walk_finds(
    build_target: Callable[..., Path], name: str, flags: tuple[str, ...]
) -> None:
    binary = build_target(name, flags=flags)
    fast, slow = ElfObject(str(binary)), ElfObject(str(binary))
    slow._symcache_tried = True  # pyelftools only, as without symbolic
    addresses = _every_address(fast, step=7 if name == "cpp_leaker" else 1)  # (the DIE walk: 28 s for all)
    assert addresses
    names = {}
    for vaddr in addresses:
        got, want = fast.source_at(vaddr), slow.source_at(vaddr)
        assert [(s.file, s.line, s.inlined) for s in got] == [(s.file, s.line, s.inlined) for s in want], hex(
            vaddr
        )
        for g, w in zip(got[:-1], want[:-1], strict=True):  # inlined functions: by name, C++ by linkage name
            names[g.function] = w.function
    assert fast._symcache is not None  # the symcache answered (not the fallback)
    mangled = {g: w for g, w in names.items() if g is not None and g.startswith("_Z")}
    assert all(g == w for g, w in names.items() if g not in mangled)  # C: the same names
    assert bool(mangled) == (name == "cpp_leaker")
    # C++: the linkage name, demangled with the symbol-table names, names the same function
    readable = Symbolizer(None).demangled([Frame(g) for g in mangled])
    for frame, dwarf_name in zip(readable, mangled.values(), strict=True):
        assert dwarf_name is not None and dwarf_name.split("<", 1)[0] in frame.symbol, (
            frame.symbol,
            dwarf_name,
        )


def test_source_lines_without_symbolic(o2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """symbolic missing (or refusing a file): pyelftools reads the same lines."""
    monkeypatch.setitem(sys.modules, "symbolic.debuginfo", None)  # import fails
    obj = ElfObject(str(o2))
    ret = _return_after_call(o2, "parse_request", "malloc@plt")
    lines = obj.source_at(ret - 1)
    assert obj._symcache_tried and obj._symcache is None
    assert [(s.function, s.line) for s in lines] == [
        ("make_buffer", _line_of("LEAK: request buffer")),
        ("parse_request", _line_of("char *buf = make_buffer(id);")),
    ]
