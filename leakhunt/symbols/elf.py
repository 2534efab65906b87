"""One ELF object on disk: its load segments, symbols, source lines and call-frame information.

``ElfObject(path)`` opens the file lazily and answers, for a link-time address (``vaddr``):

- ``function_at(vaddr)``: the ELF symbol containing it (``.symtab``, else ``.dynsym``);
- ``source_at(vaddr)``: the source location from the DWARF line table, with the chain of inlined
  calls (innermost first), from the object itself or its separate debug file
  (``/usr/lib/debug/.build-id/ab/cdef....debug``, or ``.gnu_debuglink`` beside the object or under
  ``/usr/lib/debug``);
- ``cfa_rule(vaddr)``: the call-frame rule (CFA = register + offset, where the return address and
  ``%rbp`` were saved) from ``.eh_frame`` (found through ``.eh_frame_hdr``'s sorted table, so one
  lookup parses one FDE) or ``.debug_frame``.

pyelftools reads everything: it is pure Python (no libdw at run time), parses line programs,
DWARF 4 and 5 DIEs and CFI, and is typed. Source lines with their inlined calls come first from
symbolic (Sentry's symbolication library, Rust): its symcache of a whole object is built at the
first lookup (libpython3.11 built with -g: 0.5 s) and answers each address in microseconds, where
pyelftools parses DIEs at ~75 us each (2,000 addresses of that libpython: 31 s). pyelftools stays
the fallback (symbolic missing, a file it refuses, DWARF over ``SYMCACHE_MAX_BYTES``). Every read
error of a malformed or truncated object is turned into "not known" (None), never an exception:
the object files are the target's.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE, CallFrameInfo, CFARule, RegisterRule
from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.dwarf.ranges import BaseAddressEntry, RangeEntry
from elftools.elf.elffile import ELFFile

DEFAULT_DEBUG_DIRS: tuple[str, ...] = ("/usr/lib/debug",)

# DWARF register numbers on x86-64
RSP = 7
RBP = 6
RA = 16

# Everything pyelftools raises on a malformed object (its construct layer raises plain errors too).
_READ_ERRORS = (ELFError, Exception)


@dataclass(frozen=True)
class SourceLine:
    """A function and its source position. ``inlined`` is True when the function was inlined into
    the next (outer) entry of the chain ``source_at`` returns; ``line`` 0 means "no line"."""

    function: str | None
    file: str | None
    line: int
    inlined: bool = False


@dataclass(frozen=True)
class CfaRule:
    """How to find the caller's frame at one pc: CFA = ``cfa_reg`` + ``cfa_offset``; the return
    address is at CFA + ``ra_offset``; ``%rbp`` was saved at CFA + ``rbp_offset`` (None: unchanged).
    ``cfa_reg`` None means a rule leakhunt cannot evaluate (a DWARF expression); ``outermost`` is
    set when the return address is undefined (``_start``, thread entry): the stack ends here."""

    cfa_reg: int | None
    cfa_offset: int
    ra_offset: int | None
    rbp_offset: int | None
    outermost: bool = False


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    executable: bool


# addresses whose source lines one object remembers
SOURCE_CACHE = 200_000
# symbolic builds its symcache of a whole object in memory at once; a debug file larger than this
# (a browser's: gigabytes) is read lazily, a compile unit at a time, by pyelftools instead
SYMCACHE_MAX_BYTES = 1 << 30


class ElfObject:
    """Lazy, cached reader of one ELF file (see the module docstring). Call ``close()`` when done."""

    def __init__(self, path: str, debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS) -> None:
        self.path = path
        self.debug_dirs = debug_dirs
        self._files: list[IO[bytes]] = []
        self._elf: ELFFile | None = None
        self._opened = False
        self.error: str | None = None  # why the object could not be read, once tried
        self._symbols: tuple[list[int], list[tuple[int, int, str]]] | None = None
        self._by_name: dict[str, int] | None = None
        self._dwarf: DWARFInfo | None = None
        self._dwarf_tried = False
        self.debug_file: str | None = None  # the file DWARF came from, when found
        self._cu_index: list[tuple[int, int, int]] | None = None  # (low, high, cu offset)
        self._symcache: tuple[Any, int] | None = None  # (symbolic.SymCache, image base)
        self._symcache_tried = False
        self._line_tables: dict[int, _LineTable] = {}
        # per-address answers: a long run's stacks repeat the same few hundred return addresses
        # thousands of times, and each DWARF lookup parses DIEs again (pyelftools, pure Python)
        self._segments: list[Segment] | None = None
        self._sources: dict[int, tuple[SourceLine, ...]] = {}
        self._eh: _EhFrame | None = None
        self._eh_tried = False
        self._debug_frame: list[tuple[int, int, FDE]] | None = None

    # --- file and segments -------------------------------------------------------------------

    @property
    def elf(self) -> ELFFile | None:
        if not self._opened:
            self._opened = True
            self._elf = self._open(self.path)
        return self._elf

    def _open(self, path: str) -> ELFFile | None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 (kept open while the object is in use)
        except OSError as err:
            self.error = f"cannot open {path}: {err.strerror}"
            return None
        try:
            elf = ELFFile(fh)
        except _READ_ERRORS as err:
            fh.close()
            self.error = f"{path} is not a readable ELF file ({err})"
            return None
        self._files.append(fh)
        return elf

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        self._files.clear()

    def segments(self) -> list[Segment]:
        if self._segments is None:
            self._segments = self._read_segments()
        return self._segments

    def _read_segments(self) -> list[Segment]:
        elf = self.elf
        if elf is None:
            return []
        out = []
        try:
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD":
                    out.append(
                        Segment(
                            seg["p_vaddr"],
                            seg["p_offset"],
                            seg["p_filesz"],
                            seg["p_memsz"],
                            bool(seg["p_flags"] & 1),
                        )
                    )
        except _READ_ERRORS:
            return out
        return out

    def vaddr_of_offset(self, file_offset: int) -> int | None:
        """The link-time address of a byte at ``file_offset`` in the file (from a maps line)."""
        for seg in self.segments():
            if seg.offset <= file_offset < seg.offset + max(seg.filesz, 1):
                return file_offset - seg.offset + seg.vaddr
        return None

    def build_id(self) -> str | None:
        elf = self.elf
        if elf is None:
            return None
        try:
            for sec in elf.iter_sections():
                if sec["sh_type"] == "SHT_NOTE":
                    for note in sec.iter_notes():  # type: ignore[attr-defined]
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            return str(note["n_desc"])
        except _READ_ERRORS:
            return None
        return None

    def _debuglink(self) -> str | None:
        elf = self.elf
        if elf is None:
            return None
        try:
            sec = elf.get_section_by_name(".gnu_debuglink")
            if sec is None:
                return None
            data: bytes = sec.data()
        except _READ_ERRORS:
            return None
        name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        return name or None

    def debug_file_candidates(self) -> list[str]:
        """Where a separate debug file for this object may be, in the order gdb looks."""
        out = []
        bid = self.build_id()
        if bid and len(bid) > 2:
            out += [os.path.join(d, ".build-id", bid[:2], bid[2:] + ".debug") for d in self.debug_dirs]
        link = self._debuglink()
        if link and "/" not in link:
            here = os.path.dirname(os.path.realpath(self.path))
            out.append(os.path.join(here, link))
            out.append(os.path.join(here, ".debug", link))
            out += [os.path.join(d, here.lstrip("/"), link) for d in self.debug_dirs]
        return out

    # --- symbols -----------------------------------------------------------------------------

    def function_at(self, vaddr: int) -> tuple[str, int] | None:
        """(symbol name, offset of vaddr into it) from the symbol tables, or None."""
        starts, syms = self._symbol_table()
        i = bisect.bisect_right(starts, vaddr) - 1
        while i >= 0:
            start, size, name = syms[i]
            if start <= vaddr < start + max(size, 1):
                return name, vaddr - start
            if size and start + size <= vaddr and i > 0 and syms[i - 1][0] == start:
                i -= 1
                continue
            return None
        return None

    def symbol_value(self, name: str) -> int | None:
        """The address of function ``name`` (as the tools print it: ``__strdup``, ``main``)."""
        if self._by_name is None:
            self._by_name = {}
            for start, _size, sym in self._symbol_table()[1]:
                self._by_name.setdefault(sym, start)
        return self._by_name.get(name)

    def has_symtab(self) -> bool:
        elf = self.elf
        try:
            return elf is not None and elf.get_section_by_name(".symtab") is not None
        except _READ_ERRORS:
            return False

    def _symbol_table(self) -> tuple[list[int], list[tuple[int, int, str]]]:
        if self._symbols is None:
            entries: list[tuple[int, int, str]] = []
            elf = self.elf
            if elf is not None:
                for name in (".dynsym", ".symtab"):
                    try:
                        sec = elf.get_section_by_name(name)
                        if sec is None:
                            continue
                        for sym in sec.iter_symbols():  # type: ignore[attr-defined]
                            if sym["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and sym["st_value"]:
                                entries.append((sym["st_value"], sym["st_size"], sym.name))
                    except _READ_ERRORS:
                        continue
            syms = sorted(set(entries))
            self._symbols = ([s[0] for s in syms], syms)
        return self._symbols

    # --- DWARF: lines and inlined calls ------------------------------------------------------

    def dwarf(self) -> DWARFInfo | None:
        """The DWARF of this object: its own, else from its separate debug file."""
        if self._dwarf_tried:
            return self._dwarf
        self._dwarf_tried = True
        own = self._dwarf_of(self.elf)
        if own is not None:
            self._dwarf = own
            self.debug_file = self.path
            return own
        for cand in self.debug_file_candidates():
            if not os.path.isfile(cand):
                continue
            dbg = self._open(cand)
            info = self._dwarf_of(dbg)
            if info is not None:
                self._dwarf = info
                self.debug_file = cand
                return info
        return None

    @staticmethod
    def _dwarf_of(elf: ELFFile | None) -> DWARFInfo | None:
        if elf is None:
            return None
        try:
            if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
                return None
            info = elf.get_dwarf_info(relocate_dwarf_sections=False)
            return info if info.has_debug_info else None
        except _READ_ERRORS:
            return None

    def source_at(self, vaddr: int) -> tuple[SourceLine, ...]:
        """Source position of ``vaddr``, innermost inlined call first; () when there is no DWARF."""
        hit = self._sources.get(vaddr)
        if hit is not None:
            return hit
        try:
            found = self._source_at(vaddr)
        except _READ_ERRORS:
            found = ()
        if len(self._sources) < SOURCE_CACHE:
            self._sources[vaddr] = found
        return found

    def _source_at(self, vaddr: int) -> tuple[SourceLine, ...]:
        info = self.dwarf()
        if info is None:
            return ()
        fast = self._symcache_lookup(vaddr)
        if fast is not None:
            return fast
        cu = self._cu_for(info, vaddr)
        if cu is None:
            return ()
        table = self._line_table(info, cu)
        file, line = table.lookup(vaddr) if table is not None else (None, 0)
        # (where the symcache knew no function, the DIEs name none either: their walk is skipped)
        chain = self._inline_chain(cu, vaddr) if self._symcache is None else []
        if not chain:
            return (SourceLine(None, file, line),)
        out = []
        for i, die in enumerate(chain):  # innermost first
            out.append(SourceLine(_qualified_name(die), file, line, inlined=i < len(chain) - 1))
            call_file = die.attributes.get("DW_AT_call_file")
            call_line = die.attributes.get("DW_AT_call_line")
            if table is not None and call_file is not None:
                file = table.file_name(int(call_file.value))
            line = int(call_line.value) if call_line is not None else 0
        return tuple(out)

    def _symcache_lookup(self, vaddr: int) -> tuple[SourceLine, ...] | None:
        """``source_at`` through symbolic's symcache, or None when there is none (then pyelftools).

        Function names are symbolic's: C++ functions by their linkage names (``_ZN...``), which
        the symbolizer demangles with the symbol-table names."""
        cache = self._symcache_of_debug_file()
        if cache is None:
            return None
        symcache, base = cache
        if vaddr < base:
            return ()
        try:
            found = symcache.lookup(vaddr - base)
            chain = [(loc.symbol or None, loc.full_path or None, int(loc.line)) for loc in found]
        except Exception:  # symbolic raises its own errors (and turns panics into them)
            return None
        if all(file is None and line == 0 for _, file, line in chain):
            # from the symbol table only: no DWARF there, or (1% of libpython3.11's addresses, whose
            # subprogram DIE symbolic skips) a line table that pyelftools still reads
            return None
        last = len(chain) - 1
        return tuple(
            SourceLine(name, file, line, inlined=i < last) for i, (name, file, line) in enumerate(chain)
        )

    def _symcache_of_debug_file(self) -> tuple[Any, int] | None:
        """symbolic's symcache of the file DWARF came from, and the image base its addresses are
        relative to (the lowest PT_LOAD address: 0x400000 for a non-PIE executable)."""
        if self._symcache_tried:
            return self._symcache
        self._symcache_tried = True
        path = self.debug_file
        loads = [s.vaddr for s in self.segments()]
        if path is None or not loads:
            return None
        try:
            if os.path.getsize(path) > SYMCACHE_MAX_BYTES:
                return None
            from symbolic.debuginfo import Archive  # noqa: PLC0415 - only when there is DWARF to read

            obj = next(Archive.open(path).iter_objects())
            if "debug" not in obj.features:
                return None
            self._symcache = (obj.make_symcache(), min(loads))
        except Exception:  # not installed, or a file it refuses: pyelftools reads it
            return None
        return self._symcache

    def _cu_for(self, info: DWARFInfo, vaddr: int) -> CompileUnit | None:
        if self._cu_index is None:
            index: list[tuple[int, int, int]] = []
            aranges = None
            try:
                aranges = info.get_aranges()
            except _READ_ERRORS:
                aranges = None
            if aranges is not None:
                for entry in aranges.entries:
                    if entry.length:
                        index.append((entry.begin_addr, entry.begin_addr + entry.length, entry.info_offset))
            if not index:
                for cu in info.iter_CUs():
                    top = cu.get_top_DIE()
                    for low, high in _die_ranges(info, cu, top):
                        index.append((low, high, cu.cu_offset))
            index.sort()
            self._cu_index = index
        lows = [r[0] for r in self._cu_index]
        i = bisect.bisect_right(lows, vaddr) - 1
        # ranges may overlap or be listed per CU several times: look back a few
        for j in range(i, max(i - 64, -1), -1):
            low, high, off = self._cu_index[j]
            if low <= vaddr < high:
                return info.get_CU_at(off)
        return None

    def _line_table(self, info: DWARFInfo, cu: CompileUnit) -> _LineTable | None:
        if cu.cu_offset not in self._line_tables:
            prog = info.line_program_for_CU(cu)
            if prog is None:
                return None
            self._line_tables[cu.cu_offset] = _LineTable.build(prog, cu)
        return self._line_tables[cu.cu_offset]

    def _inline_chain(self, cu: CompileUnit, vaddr: int) -> list[DIE]:
        """The subprogram containing vaddr and the inlined subroutines down to it, innermost first."""
        info = cu.dwarfinfo
        top = cu.get_top_DIE()
        chain: list[DIE] = []
        parent = top
        while True:
            found = None
            for child in parent.iter_children():
                tag = child.tag
                if tag not in (
                    "DW_TAG_subprogram",
                    "DW_TAG_inlined_subroutine",
                    "DW_TAG_lexical_block",
                    "DW_TAG_namespace",
                    "DW_TAG_class_type",
                    "DW_TAG_structure_type",
                ):
                    continue
                if tag in ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type"):
                    if not chain and child.has_children and _contains_pc(info, cu, child, vaddr, deep=True):
                        found = child
                        break
                    continue
                if _contains_pc(info, cu, child, vaddr):
                    found = child
                    break
            if found is None:
                break
            if found.tag in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine"):
                chain.append(found)
            parent = found
        chain.reverse()
        return chain

    # --- call-frame information --------------------------------------------------------------

    def has_cfi(self) -> bool:
        return self._eh_frame() is not None or bool(self._debug_frame_fdes())

    def cfa_rule(self, vaddr: int) -> CfaRule | None:
        """The CFI row covering ``vaddr`` (.eh_frame first, then .debug_frame), or None."""
        try:
            fde = None
            eh = self._eh_frame()
            if eh is not None:
                fde = eh.fde_for(vaddr)
            if fde is None:
                fdes = self._debug_frame_fdes()
                starts = [f[0] for f in fdes]
                i = bisect.bisect_right(starts, vaddr) - 1
                if i >= 0 and fdes[i][0] <= vaddr < fdes[i][1]:
                    fde = fdes[i][2]
            return None if fde is None else _row_at(fde, vaddr)
        except _READ_ERRORS:
            return None

    def _eh_frame(self) -> _EhFrame | None:
        if not self._eh_tried:
            self._eh_tried = True
            elf = self.elf
            if elf is not None:
                try:
                    self._eh = _EhFrame.load(elf)
                except _READ_ERRORS:
                    self._eh = None
        return self._eh

    def _debug_frame_fdes(self) -> list[tuple[int, int, FDE]]:
        if self._debug_frame is None:
            self._debug_frame = []
            info = self.dwarf()
            try:
                if info is not None and info.has_CFI():
                    for entry in info.CFI_entries():
                        if isinstance(entry, FDE):
                            low = entry.header["initial_location"]
                            self._debug_frame.append((low, low + entry.header["address_range"], entry))
            except _READ_ERRORS:
                pass
            self._debug_frame.sort(key=lambda f: f[0])
        return self._debug_frame


def pyelftools_line_rows(prog: Any) -> list[tuple[int, int, int, bool]]:
    """The rows (address, file, line, end of sequence) of a line program, as pyelftools decodes it."""
    rows = []
    for entry in prog.get_entries():
        state = entry.state
        if state is not None:
            rows.append((state.address, state.file, state.line, bool(state.end_sequence)))
    return rows


def line_rows(prog: Any) -> list[tuple[int, int, int, bool]] | None:
    """``pyelftools_line_rows``, decoded from the program's bytes in one loop.

    pyelftools builds an entry per opcode and copies the whole state per row: decoding the line
    programs of a large object built with -g (an interpreter: thousands of rows per unit) took
    most of a live run's time. This decodes the same opcodes (DWARF 2-5, 6.2.5) into plain tuples.
    None when the program holds what only pyelftools handles (DW_LNE_define_file, which adds a
    file; an opcode it rejects; bytes that end mid-instruction): the caller decodes it so.
    """
    header = prog.header
    stream = prog.stream
    stream.seek(prog.program_start_offset)
    data = stream.read(prog.program_end_offset - prog.program_start_offset)
    base = int(header["opcode_base"])
    line_base, line_range = int(header["line_base"]), int(header["line_range"])
    min_len = int(header["minimum_instruction_length"])
    max_ops = int(prog["maximum_operations_per_instruction"]) or 1
    order: Literal["little", "big"] = "little" if prog.structs.little_endian else "big"
    addr_size = int(prog.structs.address_size)
    const_add = ((255 - base) // line_range) * min_len
    rows: list[tuple[int, int, int, bool]] = []
    address, op_index, file, line = 0, 0, 1, 1
    i, n = 0, len(data)
    try:
        while i < n:
            op = data[i]
            i += 1
            if op >= base:  # special opcode: advance address and line, add a row
                adjusted = op - base
                advance = op_index + adjusted // line_range
                address += min_len * (advance // max_ops)
                op_index = advance % max_ops
                line += line_base + adjusted % line_range
                rows.append((address, file, line, False))
            elif op == 0:  # extended: length, sub-opcode, operands
                length, i = _leb128(data, i)
                ex = data[i]
                i += 1
                if ex == 1:  # end_sequence
                    rows.append((address, file, line, True))
                    address, op_index, file, line = 0, 0, 1, 1
                elif ex == 2:  # set_address
                    if i + addr_size > n:
                        return None
                    address = int.from_bytes(data[i : i + addr_size], order)
                    i += addr_size
                elif ex == 3:  # define_file
                    return None
                elif ex == 4:  # set_discriminator
                    _, i = _leb128(data, i)
                else:
                    i += length - 1
            elif op == 1:  # copy
                rows.append((address, file, line, False))
            elif op == 2:  # advance_pc
                value, i = _leb128(data, i)
                address += value * min_len
            elif op == 3:  # advance_line
                value, i = _leb128(data, i, signed=True)
                line += value
            elif op == 4:  # set_file
                file, i = _leb128(data, i)
            elif op in (5, 12):  # set_column, set_isa
                _, i = _leb128(data, i)
            elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
                pass
            elif op == 8:  # const_add_pc
                address += const_add
            elif op == 9:  # fixed_advance_pc
                if i + 2 > n:
                    return None
                address += int.from_bytes(data[i : i + 2], order)
                i += 2
            else:
                return None
    except IndexError:  # ends mid-instruction
        return None
    return rows


def _leb128(data: bytes, i: int, signed: bool = False) -> tuple[int, int]:
    """The LEB128 number at ``data[i]`` (signed: sign-extended) and the index after it."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if signed and byte & 0x40:
                value -= 1 << shift
            return value, i


class _LineTable:
    """The rows of one CU's line program, sorted by address, and its file names."""

    def __init__(self, addresses: list[int], rows: list[tuple[int, int, bool]], files: list[str]):
        self.addresses = addresses
        self.rows = rows  # (file index, line, end_sequence)
        self.files = files

    @classmethod
    def build(cls, prog: Any, cu: CompileUnit) -> _LineTable:
        header = prog.header
        version = header["version"]
        top = cu.get_top_DIE()
        comp_dir = _attr_str(top, "DW_AT_comp_dir") or ""
        dirs = [_text(d) for d in header["include_directory"]]
        files = []
        for entry in header["file_entry"]:
            name = _text(entry.name)
            d = entry.dir_index
            if version >= 5:
                base = dirs[d] if 0 <= d < len(dirs) else ""
            else:
                base = dirs[d - 1] if 0 < d <= len(dirs) else comp_dir
            if base and not os.path.isabs(base):
                base = os.path.join(comp_dir, base)
            files.append(name if os.path.isabs(name) else os.path.join(base, name))
        if version < 5:
            files.insert(0, "")  # file indexes start at 1 before DWARF 5
        rows = line_rows(prog)
        if rows is None:
            rows = pyelftools_line_rows(prog)
        rows.sort(key=lambda r: (r[0], not r[3]))
        return cls([r[0] for r in rows], [(r[1], r[2], r[3]) for r in rows], files)

    def file_name(self, index: int) -> str | None:
        return self.files[index] if 0 <= index < len(self.files) and self.files[index] else None

    def lookup(self, vaddr: int) -> tuple[str | None, int]:
        i = bisect.bisect_right(self.addresses, vaddr) - 1
        if i < 0:
            return None, 0
        file, line, end = self.rows[i]
        if end:
            return None, 0
        return self.file_name(file), line


class _EhFrame:
    """``.eh_frame`` with ``.eh_frame_hdr``'s binary search table: one FDE parsed per lookup."""

    def __init__(self, cfi: CallFrameInfo, table: list[tuple[int, int]], eh_addr: int) -> None:
        self.cfi = cfi
        self.starts = [t[0] for t in table]
        self.fde_addrs = [t[1] for t in table]
        self.eh_addr = eh_addr
        self.cache: dict[int, FDE | None] = {}

    @classmethod
    def load(cls, elf: ELFFile) -> _EhFrame | None:
        eh = elf.get_section_by_name(".eh_frame")
        hdr = elf.get_section_by_name(".eh_frame_hdr")
        if eh is None or hdr is None or not elf.has_dwarf_info():
            return None
        table = _parse_eh_frame_hdr(hdr.data(), hdr["sh_addr"])
        if table is None:
            return None
        info = elf.get_dwarf_info(relocate_dwarf_sections=False)
        if not info.has_EH_CFI():
            return None
        cfi = info.eh_frame_sec
        if cfi is None:
            return None
        parser = CallFrameInfo(
            stream=cfi.stream,
            size=cfi.size,
            address=cfi.address,
            base_structs=info.structs,
            for_eh_frame=True,
        )
        return cls(parser, table, eh["sh_addr"])

    def fde_for(self, vaddr: int) -> FDE | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        if i not in self.cache:
            entry = self.cfi._parse_entry_at(self.fde_addrs[i] - self.eh_addr)
            self.cache[i] = entry if isinstance(entry, FDE) else None
        fde = self.cache[i]
        if fde is None:
            return None
        low = fde.header["initial_location"]
        return fde if low <= vaddr < low + fde.header["address_range"] else None


def _parse_eh_frame_hdr(data: bytes, addr: int) -> list[tuple[int, int]] | None:
    """The (initial location, FDE address) table of ``.eh_frame_hdr``, for the encodings every
    x86-64 linker writes (datarel sdata4 table, udata4/sdata4 count); None otherwise."""
    if len(data) < 12 or data[0] != 1:
        return None
    ptr_enc, count_enc, table_enc = data[1], data[2], data[3]
    pos = 4
    if ptr_enc & 0x0F in (0x03, 0x0B):
        pos += 4
    elif ptr_enc & 0x0F in (0x04, 0x0C):
        pos += 8
    else:
        return None
    if count_enc & 0x0F not in (0x03, 0x0B) or table_enc != 0x3B:
        return None
    (count,) = struct.unpack_from("<I" if count_enc & 0x0F == 0x03 else "<i", data, pos)
    pos += 4
    if count < 0 or pos + 8 * count > len(data):
        return None
    table = []
    for i in range(count):
        start, fde = struct.unpack_from("<ii", data, pos + 8 * i)
        table.append((addr + start, addr + fde))
    return table


def _row_at(fde: FDE, vaddr: int) -> CfaRule | None:
    decoded = fde.get_decoded()
    row = None
    for candidate in decoded.table:
        if candidate["pc"] <= vaddr:
            row = candidate
        else:
            break
    if row is None:
        return None
    cfa = row["cfa"]
    assert isinstance(cfa, CFARule)
    ra = row.get(RA)
    rbp = row.get(RBP)
    outermost = isinstance(ra, RegisterRule) and ra.type == RegisterRule.UNDEFINED
    ra_off = _offset_rule(ra)
    rbp_off = _offset_rule(rbp)
    if cfa.expr is not None or cfa.reg not in (RSP, RBP):
        return CfaRule(None, 0, ra_off, rbp_off, outermost)
    return CfaRule(cfa.reg, int(cfa.offset or 0), ra_off if ra_off is not None else -8, rbp_off, outermost)


def _offset_rule(rule: object) -> int | None:
    """N of a register saved at CFA+N, else None."""
    if isinstance(rule, RegisterRule) and rule.type == RegisterRule.OFFSET and isinstance(rule.arg, int):
        return rule.arg
    return None


# --- DIE helpers ------------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _attr_str(die: DIE, name: str) -> str | None:
    attr = die.attributes.get(name)
    return None if attr is None else _text(attr.value)


def _origin(die: DIE) -> DIE:
    """Follow DW_AT_abstract_origin / DW_AT_specification to the DIE that has the name."""
    seen = 0
    while seen < 8:
        seen += 1
        for name in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if name in die.attributes:
                die = die.get_DIE_from_attribute(name)
                break
        else:
            return die
    return die


def _qualified_name(die: DIE) -> str | None:
    """``ns::Class::method`` for a subprogram or inlined subroutine DIE."""
    target = _origin(die)
    name = _attr_str(target, "DW_AT_name")
    if name is None:
        return None
    parts = [name]
    parent = target.get_parent()
    while parent is not None and parent.tag in (
        "DW_TAG_namespace",
        "DW_TAG_class_type",
        "DW_TAG_structure_type",
        "DW_TAG_union_type",
    ):
        parts.append(_attr_str(parent, "DW_AT_name") or "(anonymous namespace)")
        parent = parent.get_parent()
    return "::".join(reversed(parts))


def _die_ranges(info: DWARFInfo, cu: CompileUnit, die: DIE) -> Iterator[tuple[int, int]]:
    attrs = die.attributes
    low_attr = attrs.get("DW_AT_low_pc")
    if "DW_AT_ranges" in attrs:
        ranges = info.range_lists()
        if ranges is None:
            return
        rattr = attrs["DW_AT_ranges"]
        if rattr.form == "DW_FORM_rnglistx":
            return
        top_low = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        base = int(top_low.value) if top_low is not None else 0
        for entry in ranges.get_range_list_at_offset(int(rattr.value), cu=cu):
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
            elif isinstance(entry, RangeEntry):
                if entry.is_absolute:
                    yield entry.begin_offset, entry.end_offset
                else:
                    yield base + entry.begin_offset, base + entry.end_offset
        return
    if low_attr is None:
        return
    low = int(low_attr.value)
    high_attr = attrs.get("DW_AT_high_pc")
    if high_attr is None:
        yield low, low + 1
        return
    high = int(high_attr.value)
    if high_attr.form != "DW_FORM_addr":
        high += low
    yield low, high


def _contains_pc(info: DWARFInfo, cu: CompileUnit, die: DIE, vaddr: int, deep: bool = False) -> bool:
    if deep:
        # a namespace or class has no ranges: look for a member function that holds vaddr
        for child in die.iter_children():
            if child.tag == "DW_TAG_subprogram" and _contains_pc(info, cu, child, vaddr):
                return True
            nested = child.tag in ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type")
            if nested and child.has_children and _contains_pc(info, cu, child, vaddr, deep=True):
                return True
        return False
    return any(low <= vaddr < high for low, high in _die_ranges(info, cu, die))
