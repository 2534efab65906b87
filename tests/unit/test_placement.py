"""Where the native probe goes in each allocator function (leakhunt.probe.placement).

Recorded bytes are the first instructions of real builds (read with placement.read_code):
- Debian 12 glibc 2.36 and Debian 13 glibc 2.41 (libc6 2.41-12+deb13u5) ``free``, ``malloc``,
  ``posix_memalign``, ``reallocarray``;
- Debian 12 libstdc++ (GCC 12) ``operator new(size_t)`` (``_Znwm``), which starts with ``endbr64``,
  and ``operator delete(void*)`` (``_ZdlPv``: ``endbr64; jmp free``).
"""

from __future__ import annotations

import os
import platform

import pytest

from leakhunt.probe import native, placement, tools

DEBIAN13_FREE = bytes.fromhex("4885ff0f847f010000415741564155415455488d6ff0534883ec284c8b250e1e")
DEBIAN13_MALLOC = bytes.fromhex("415455534889fb4883ec10803d46991400000f84680100004885db0f886d0100")
DEBIAN13_POSIX_MEMALIGN = bytes.fromhex("803d517a14000041544989d4554889fd534889f3745a4889da48c1ea03488d42")
DEBIAN13_REALLOCARRAY = bytes.fromhex("4889f048f7e24889c67005e9b032f8ff488b057900140064c7000c00000031c0")
DEBIAN12_FREE = bytes.fromhex("4885ff0f84bf00000055488d77f0534883ec18")
DEBIAN12_ZNWM = bytes.fromhex("f30f1efa4885ffb80100000053480f45c74889c34889dfe8")  # endbr64 first
DEBIAN12_ZDLPV = bytes.fromhex("f30f1efae9872fffff0f1f8000000000")


def place_as(function: str, code: bytes) -> placement.Placement:
    return placement.place(code, native.ROLES[function].reads)


def test_debian13_free_is_probed_on_its_null_test_branch() -> None:
    # test %rdi,%rdi (single-stepped) ; je (emulated): every call passes the je, rdi intact
    where = place_as("free", DEBIAN13_FREE)
    assert (where.offset, where.emulated) == (3, True)
    assert where.instruction.startswith("je")


def test_debian12_free() -> None:
    where = place_as("free", DEBIAN12_FREE)
    assert (where.offset, where.emulated) == (3, True)


def test_a_function_whose_first_instruction_is_a_push_stays_at_its_entry() -> None:
    where = place_as("malloc", DEBIAN13_MALLOC)
    assert (where.offset, where.emulated, where.instruction) == (0, True, "push r12")


def test_endbr64_first_function_goes_past_it_while_the_size_is_untouched() -> None:
    # endbr64; test rdi,rdi; mov eax,1; push rbx: rdi (the size) is still the argument at the push
    where = place_as("_Znwm", DEBIAN12_ZNWM)
    assert (where.offset, where.emulated, where.instruction) == (12, True, "push rbx")


def test_endbr64_then_tail_jump() -> None:
    where = place_as("_ZdlPv", DEBIAN12_ZDLPV)
    assert (where.offset, where.emulated) == (4, True)
    assert where.instruction.startswith("jmp")


def test_a_compare_before_the_first_push_writes_only_flags() -> None:
    where = place_as("posix_memalign", DEBIAN13_POSIX_MEMALIGN)
    assert (where.offset, where.instruction) == (7, "push r12")


def test_argument_registers_rewritten_first_keep_the_probe_at_offset_0() -> None:
    # reallocarray: mov rax,rsi; mul rdx (writes rdx, the size); mov rsi,rax; jo ...
    where = place_as("reallocarray", DEBIAN13_REALLOCARRAY)
    assert (where.offset, where.emulated) == (0, False)
    assert "rdx" in where.reason


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("4883ec0853", "rsp"),  # sub rsp, 8; push rbx: the stack pointer moved
        ("4889c753", "rdi"),  # mov rdi, rax; push rbx: the argument was replaced
        ("c3", "branches"),  # ret
        ("ffe053", "branches"),  # jmp *%rax: an indirect jump is not emulated
        ("660f8400000000", "branches"),  # jcc with a 66 prefix: the kernel refuses to emulate it
        ("0f05", "branches"),  # syscall
        ("", "no instruction"),
    ],
)
def test_unsafe_preludes_fall_back_to_offset_0(code: str, why: str) -> None:
    where = placement.place(bytes.fromhex(code), frozenset({"rdi"}))
    assert (where.offset, where.emulated) == (0, False)
    assert why in where.reason


def test_no_emulated_instruction_in_reach() -> None:
    code = bytes.fromhex("4885c0") * 20  # test rax, rax (x20)
    where = placement.place(code, frozenset({"rdi"}))
    assert (where.offset, where.emulated) == (0, False)


@pytest.mark.parametrize(
    ("code", "emulated"),
    [
        ("53", True),  # push rbx
        ("4154", True),  # push r12
        ("4850", False),  # REX.W push: only REX 41 is emulated
        ("90", True),  # nop
        ("6690", False),  # 66 nop
        ("eb05", True),  # jmp rel8
        ("e900000000", True),  # jmp rel32
        ("e800000000", True),  # call rel32
        ("7405", True),  # je rel8
        ("0f8400000000", True),  # je rel32
        ("0f1f4000", False),  # multi-byte nop
        ("f30f1efa", False),  # endbr64
        ("4885ff", False),  # test rdi, rdi
    ],
)
def test_emulated_encodings(code: str, emulated: bool) -> None:
    assert placement.emulated_by_kernel(bytes.fromhex(code)) is emulated


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 placement")
def test_this_machines_libc() -> None:
    libc = next(
        (
            p
            for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
            if os.path.exists(p)
        ),
        None,
    )
    if libc is None:
        pytest.skip("no glibc here")
    placed, notes = native.place_hooks(native.default_hooks(libc))
    by_name = {p.hook.function: p for p in placed}
    assert {"malloc", "free", "calloc", "realloc", "posix_memalign"} <= by_name.keys()
    # memalign and aligned_alloc are one function in glibc: hooked once
    assert not {"memalign", "aligned_alloc"} <= by_name.keys()
    symbols = tools.elf_functions(libc)
    for name in ("malloc", "free", "calloc", "realloc"):
        hook = by_name[name]
        assert hook.placement.emulated, (name, hook.placement)
        assert hook.address == symbols[name] + hook.placement.offset
    # every probe that had to stay at an entry is named in the notes
    for hook in placed:
        assert hook.placement.emulated or any(hook.hook.function in n for n in notes)


def test_read_code_of_a_non_elf_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "x")
    with open(path, "wb") as fh:
        fh.write(b"not an ELF file at all, long enough for a header........................")
    assert placement.read_code(path, 0x1000) == b""
    assert placement.read_code(os.path.join(tmp_path, "missing"), 0x1000) == b""
