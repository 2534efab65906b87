"""Where to put a uprobe in an allocator function so that the kernel emulates the probed instruction.

At a uprobe the kernel must execute the instruction it replaced. A few x86-64 instructions it
emulates in the trap handler (arch/x86/kernel/uprobes.c: ``push reg``, with the REX prefix 41 for
r8-r15; ``nop`` 0x90; ``jmp``/``call`` rel; ``jcc`` rel8/rel32); every other one it executes out of
line with the trap flag set, a second trap: on this machine kind ~0.4 us against ~14 us per call
(see shared PROBES.md). glibc's ``free`` starts with ``test %rdi,%rdi``, so a probe at offset 0
costs the single step on every free.

``place()`` decodes the first instructions of a function (capstone) and returns the offset of the
first emulated instruction when that is safe:

- it is an instruction boundary (linear decoding from the function's entry);
- every path from the entry reaches it: the instructions before it neither branch nor return (an
  emulated branch is itself a candidate, so the first branch met is either chosen or stops the
  search);
- what the probe reads is unchanged there: the instructions before it write neither the stack
  pointer nor an argument register the probe reads (flags and memory are fine).

Otherwise it returns offset 0 with the reason, which the report's data quality repeats.

    >>> place(bytes.fromhex("4885ff0f84bf00000055"), frozenset({"rdi"})).offset   # glibc 2.36 free
    3
"""

from __future__ import annotations

import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

import capstone

MAX_INSTRUCTIONS = 16
CODE_BYTES = 64

# Sub-registers of the registers a probe reads, so that a write to %edi counts as one to %rdi.
_ALIASES: dict[str, str] = {}
for _full, _parts in {
    "rdi": ("edi", "di", "dil"),
    "rsi": ("esi", "si", "sil"),
    "rdx": ("edx", "dx", "dl", "dh"),
    "rcx": ("ecx", "cx", "cl", "ch"),
    "r8": ("r8d", "r8w", "r8b"),
    "r9": ("r9d", "r9w", "r9b"),
    "rsp": ("esp", "sp", "spl"),
}.items():
    _ALIASES[_full] = _full
    for _part in _parts:
        _ALIASES[_part] = _full

_STOPPERS = {"syscall", "sysenter", "int3", "int", "ud2", "hlt", "ret", "retf", "leave", "iretq"}


@dataclass(frozen=True)
class Placement:
    offset: int  # bytes from the function's entry
    emulated: bool  # True when the kernel emulates the probed instruction
    instruction: str  # the probed instruction, as capstone prints it ("" when unknown)
    reason: str  # why here, in a few words


def emulated_by_kernel(code: bytes) -> bool:
    """True for the encodings the x86-64 uprobe code emulates (no prefixes but REX 41 on push)."""
    if not code:
        return False
    op = code[0]
    if len(code) == 1:
        return 0x50 <= op <= 0x57 or op == 0x90  # push reg, nop
    if len(code) == 2:
        if op == 0x41 and 0x50 <= code[1] <= 0x57:  # push r8..r15
            return True
        return op == 0xEB or 0x70 <= op <= 0x7F  # jmp rel8, jcc rel8
    if len(code) == 5:
        return op in (0xE9, 0xE8)  # jmp rel32, call rel32
    if len(code) == 6:
        return op == 0x0F and 0x80 <= code[1] <= 0x8F  # jcc rel32
    return False


def place(code: bytes, reads: frozenset[str], *, address: int = 0) -> Placement:
    """The probe offset for a function whose first bytes are ``code`` (see the module docstring).

    ``reads``: the 64-bit registers the probe reads at entry (``rdi``, ``rsi``, ``rdx``...); the
    stack pointer is always read. ``address`` only labels capstone's output.
    """
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    guarded = {_ALIASES.get(r, r) for r in reads} | {"rsp"}
    first = ""
    for n, insn in enumerate(md.disasm(code, address)):
        text = f"{insn.mnemonic} {insn.op_str}".strip()
        if n == 0:
            first = text
        if emulated_by_kernel(bytes(insn.bytes)):
            offset = insn.address - address
            why = "entry" if offset == 0 else f"first emulated instruction after {n} others"
            return Placement(offset, True, text, why)
        if n + 1 >= MAX_INSTRUCTIONS:
            break
        groups = set(insn.groups)
        branchy = {
            capstone.CS_GRP_JUMP,
            capstone.CS_GRP_CALL,
            capstone.CS_GRP_RET,
            capstone.CS_GRP_INT,
            capstone.CS_GRP_IRET,
            capstone.CS_GRP_BRANCH_RELATIVE,
        }
        if groups & branchy or insn.mnemonic in _STOPPERS:
            return Placement(0, False, first, f"'{text}' (not emulated) branches before any emulated one")
        try:
            _read, written = insn.regs_access()
        except capstone.CsError:
            return Placement(0, False, first, f"cannot tell what '{text}' writes")
        names = {_ALIASES.get(insn.reg_name(r), insn.reg_name(r)) for r in written}
        clobbered = sorted(names & guarded)
        if clobbered:
            return Placement(
                0, False, first, f"'{text}' changes {', '.join(clobbered)} before any emulated instruction"
            )
    else:
        if not first:
            return Placement(0, False, "", "no instruction could be decoded")
    return Placement(0, False, first, f"no emulated instruction in the first {MAX_INSTRUCTIONS}")


def placement_supported() -> str | None:
    """None when ``place()`` applies to this machine, else why not.

    ``LEAKHUNT_PROBE_AT_ENTRY=1`` keeps every probe at its function's entry (to compare the cost,
    scripts/bench_probe_cost.py)."""
    if os.environ.get("LEAKHUNT_PROBE_AT_ENTRY") == "1":
        return "LEAKHUNT_PROBE_AT_ENTRY=1 asked for probes at function entries"
    if platform.machine() != "x86_64":
        return f"probe placement is implemented for x86-64 only (this is {platform.machine()})"
    return None


def read_code(path: str, vaddr: int, size: int = CODE_BYTES) -> bytes:
    """``size`` bytes of a 64-bit little-endian ELF file at virtual address ``vaddr`` (b"" if none)."""
    try:
        with Path(path).open("rb") as fh:
            header = fh.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return b""
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize
                )
                if p_type == 1 and p_vaddr <= vaddr < p_vaddr + p_filesz:
                    fh.seek(p_offset + (vaddr - p_vaddr))
                    return fh.read(min(size, p_vaddr + p_filesz - vaddr))
    except (OSError, struct.error):
        return b""
    return b""
