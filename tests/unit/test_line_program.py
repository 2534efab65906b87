"""leakhunt.symbols.elf.line_rows (DWARF line programs decoded in one loop) against pyelftools'
decoder, on objects compiled here (C and C++, DWARF 4 and 5, -O0/-O2) and on hand-made programs
for the opcodes compilers rarely emit and the cases it leaves to pyelftools."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from leakhunt.symbols.elf import line_rows, pyelftools_line_rows
from tests.conftest import compile_target

# (target, build flags): C and C++, optimised and not, DWARF 5 (gcc's default) and 4
BUILDS = [
    ("unwind_leaker", ("-O2",)),
    ("unwind_leaker", ("-O0", "-gdwarf-4")),
    ("alloc_leaker_cpp", ("-O2", "-gdwarf-4")),
    ("alloc_leaker_cpp", ("-O1",)),
    ("many_stacks", ("-O2",)),
]


def _programs(path: Path) -> list[Any]:
    with open(path, "rb") as fh:
        elf = ELFFile(io.BytesIO(fh.read()))
    info = elf.get_dwarf_info()
    programs = [info.line_program_for_CU(cu) for cu in info.iter_CUs()]
    return [p for p in programs if p is not None]


@pytest.mark.parametrize(("name", "flags"), BUILDS)
def test_rows_equal_pyelftools_on_objects_built_here(name: str, flags: tuple[str, ...]) -> None:
    if shutil.which("gcc" if name != "alloc_leaker_cpp" else "g++") is None:
        pytest.skip("no compiler (scripts/setup.sh installs it)")
    programs = _programs(compile_target(name, flags=flags))
    assert programs
    if "-gdwarf-4" in flags:
        assert {p.header["version"] for p in programs} == {4}
    for prog in programs:
        rows = line_rows(prog)
        assert rows is not None
        assert len(rows) > 10 and rows == pyelftools_line_rows(prog)


class _Structs:
    little_endian = True
    address_size = 8


class _Program:
    """What line_rows reads of a pyelftools LineProgram."""

    def __init__(self, code: bytes, opcode_base: int = 13) -> None:
        self.stream = io.BytesIO(b"\xee" * 5 + code + b"\xee")
        self.program_start_offset = 5
        self.program_end_offset = 5 + len(code)
        self.structs = _Structs()
        self.header = {
            "opcode_base": opcode_base,
            "line_base": -5,
            "line_range": 14,
            "minimum_instruction_length": 1,
            "maximum_operations_per_instruction": 1,
        }

    def __getitem__(self, name: str) -> object:
        return self.header[name]


def _set_address(address: int) -> bytes:
    return bytes([0, 9, 2]) + address.to_bytes(8, "little")


def test_every_opcode_moves_the_state_as_dwarf_says() -> None:
    code = (
        _set_address(0x1000)
        + bytes([1])  # copy: (0x1000, file 1, line 1)
        + bytes([13 + 5 + 2 * 14])  # special: address +2, line +0 -> (0x1002, 1, 1)
        + bytes([3, 0x7E])  # advance_line -2 (sleb) -> line -1
        + bytes([3, 0x0A])  # advance_line +10 -> line 9
        + bytes([4, 3])  # set_file 3
        + bytes([2, 0x81, 0x01])  # advance_pc 129 (uleb) -> 0x1083
        + bytes([5, 7, 6, 7, 10, 11, 12, 1])  # column, stmt, basic block, prologue, epilogue, isa
        + bytes([0, 2, 4, 9])  # set_discriminator 9
        + bytes([0, 3, 0x80, 0, 0])  # an extended opcode it does not know: skipped by length
        + bytes([8])  # const_add_pc: (255 - 13) // 14 = 17 -> 0x1094
        + bytes([9, 0x10, 0x00])  # fixed_advance_pc 16 -> 0x10a4
        + bytes([1])  # copy: (0x10a4, file 3, line 9)
        + bytes([0, 1, 1])  # end_sequence: a row, then the state resets
        + _set_address(0x2000)
        + bytes([13 + 5 + 1])  # special: address +0, line +1 -> (0x2000, 1, 2)
    )
    assert line_rows(_Program(code)) == [
        (0x1000, 1, 1, False),
        (0x1002, 1, 1, False),
        (0x10A4, 3, 9, False),
        (0x10A4, 3, 9, True),
        (0x2000, 1, 2, False),
    ]


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (_set_address(0x1000) + bytes([0, 5, 3]) + b"a.c\0" + bytes([0, 0, 0]), "define_file adds a file"),
        (_set_address(0x1000) + bytes([13]), "opcode 13 below an opcode_base of 14"),
        (_set_address(0x1000) + bytes([2]), "ends inside an operand"),
        (bytes([0, 9, 2, 0, 0x10]), "an address cut short"),
    ],
)
def test_what_it_does_not_decode_is_left_to_pyelftools(code: bytes, why: str) -> None:
    base = 14 if "opcode_base of 14" in why else 13
    assert line_rows(_Program(code, opcode_base=base)) is None, why
