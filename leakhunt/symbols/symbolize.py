"""Name frames down to the source line, and carry that through a whole investigation.

``Symbolizer`` turns an address of the process (with its mappings) or a ``symbol+offset`` in a
module into frames with file and line from the object's DWARF (its own or a separate debug file),
one frame per inlined call (``Frame.inlined``). ``symbolize_investigation`` applies it to every
stack of an ``Investigation`` and adds to its data quality which objects had no debug info and how
to get it. Frames it cannot place are returned unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable

from leakhunt.model import DataQuality, Finding, Frame, Investigation, Stack, StackSample
from leakhunt.symbols.demangle import demangle_all
from leakhunt.symbols.elf import ElfObject
from leakhunt.symbols.maps import AddressSpace, Mapping
from leakhunt.symbols.source import allocating_frame, read_snippet
from leakhunt.symbols.unwind import ObjectCache, Unwound

_log = logging.getLogger(__name__)

CALLERS_LOST = "[callers lost]"
UNKNOWN = "[unknown]"
SNIPPETS = 10  # findings that carry their source lines


def debug_hint(path: str) -> str:
    """What a user does to get source lines for ``path``."""
    base = path.rsplit("/", 1)[-1]
    if base.startswith("libc.so") or base.startswith("ld-linux"):
        return f"no debug info for {path}: install libc6-dbg for its source lines"
    if path.startswith(("/usr/", "/lib")):
        return (
            f"no debug info for {path}: install its -dbgsym package (`dpkg -S {path}` names the "
            "package; -dbgsym packages come from the debian-debug archive)"
        )
    return f"no debug info for {path}: rebuild it with -g (or keep its separate .debug file)"


class Symbolizer:
    """Frames with source lines for one process (``space``) or for module paths alone (import)."""

    def __init__(self, space: AddressSpace | None, objects: ObjectCache | None = None) -> None:
        self.space = space
        self.objects = objects if objects is not None else ObjectCache()
        self.no_debug: set[str] = set()  # objects with frames but no DWARF
        self.with_lines = 0
        self._demangled: dict[str, str] = {}

    def _object_for(self, frame: Frame) -> tuple[ElfObject, int] | None:
        """The object and link-time address of a frame, when they can be found."""
        if self.space is not None and frame.address is not None:
            mapping = self.space.find(frame.address)
            if mapping is not None and mapping.is_file:
                obj = self.objects.get(self.space.file_path(mapping))
                vaddr = obj.vaddr_of_offset(frame.address - mapping.start + mapping.offset)
                if vaddr is not None:
                    return obj, vaddr
        if frame.offset is None or frame.module is None or frame.symbol.startswith(("[", "0x")):
            return None
        path = frame.module if frame.module.startswith("/") else None
        if path is None and self.space is not None:
            mapping = self.space.by_basename(frame.module)
            path = self.space.file_path(mapping) if mapping is not None else None
        if path is None:
            return None
        obj = self.objects.get(path)
        start = obj.symbol_value(frame.symbol)
        return None if start is None else (obj, start + frame.offset)

    def frame_for_pc(self, pc: int, is_return: bool) -> list[Frame]:
        """Frames for one pc of an unwound stack (several when calls were inlined there)."""
        module = None
        symbol = f"0x{pc:x}"
        offset = None
        if self.space is not None:
            mapping = self.space.find(pc)
            if mapping is not None:
                module = mapping.path.rsplit("/", 1)[-1] if mapping.path else None
                if mapping.is_file:
                    obj = self.objects.get(self.space.file_path(mapping))
                    vaddr = obj.vaddr_of_offset(pc - mapping.start + mapping.offset)
                    named = obj.function_at(vaddr) if vaddr is not None else None
                    if named is not None:
                        symbol, offset = named
                    else:
                        symbol = UNKNOWN
        base = Frame(symbol, offset, module, pc)
        return self.annotate(base, is_return)

    def annotate(self, frame: Frame, is_return: bool = True) -> list[Frame]:
        """``frame`` with its source line, preceded by the calls inlined at its address."""
        if frame.file is not None or frame.inlined:
            return [frame]
        found = self._object_for(frame)
        if found is None:
            return [frame]
        obj, vaddr = found
        # a return address points after the call: look the call itself up
        lines = obj.source_at(vaddr - 1 if is_return and vaddr > 0 else vaddr)
        if not lines:
            if obj.dwarf() is None:
                self.no_debug.add(obj.path)
            return [frame]
        self.with_lines += 1
        out = []
        for sl in lines[:-1]:
            out.append(
                Frame(
                    sl.function or "[inlined]",
                    None,
                    frame.module,
                    frame.address,
                    sl.file,
                    sl.line or None,
                    inlined=True,
                )
            )
        last = lines[-1]
        named = frame
        if frame.symbol == UNKNOWN or frame.symbol.startswith("0x"):
            # a bare address (bpftrace cannot read the symbols of a target in another root) or
            # a function the tool did not name: the symbol tables, else DWARF, know it
            at = obj.function_at(vaddr)
            if at is not None:
                named = dataclasses.replace(frame, symbol=at[0], offset=at[1])
            elif last.function:
                named = dataclasses.replace(frame, symbol=last.function, offset=None)
            if named.module is None:
                named = dataclasses.replace(named, module=os.path.basename(obj.path))
        out.append(dataclasses.replace(named, file=last.file, line=last.line or None))
        return out

    def annotate_stack(self, stack: Stack) -> Stack:
        frames: list[Frame] = []
        for i, fr in enumerate(stack.frames):
            # frame 0 may be the probed function itself (an exact pc); the others are return addresses
            frames.extend(self.annotate(fr, is_return=i > 0 or (fr.offset or 0) > 0))
        return Stack(tuple(self.demangled(frames)))

    def stack_from_unwound(self, unwound: Unwound, first_is_return: bool = False) -> Stack:
        """The frames of an unwound stack, with a closing ``[callers lost]`` frame saying why when the
        walk did not reach the program's entry. ``first_is_return``: the first pc is a return
        address too (a return probe's), so its line is the call's."""
        frames: list[Frame] = []
        for i, pc in enumerate(unwound.pcs):
            frames.extend(self.frame_for_pc(pc, is_return=i > 0 or first_is_return))
        if not unwound.complete:
            frames.append(Frame(f"{CALLERS_LOST} {unwound.stop_detail or unwound.stop}"))
        return Stack(tuple(self.demangled(frames)))

    def demangled(self, frames: Iterable[Frame]) -> list[Frame]:
        """``frames`` with C++ names demangled (``_Znwm`` -> ``operator new(unsigned long)``): the
        symbol tables' and those of inlined functions (DWARF's linkage names)."""
        frames = list(frames)
        new = {f.symbol for f in frames if f.symbol.startswith("_Z")} - self._demangled.keys()
        if new:
            found = demangle_all(new)
            for name in new:
                self._demangled[name] = found.get(name, name)
        return [
            dataclasses.replace(f, symbol=self._demangled[f.symbol]) if f.symbol in self._demangled else f
            for f in frames
        ]

    def quality_notes(self) -> tuple[str, ...]:
        return tuple(debug_hint(p) for p in sorted(self.no_debug))

    def close(self) -> None:
        self.objects.close()


def map_stacks(inv: Investigation, fn: dict[Stack, Stack]) -> Investigation:
    """``inv`` with every stack replaced by ``fn[stack]`` (stacks that become equal are summed)."""

    def samples(ss: tuple[StackSample, ...]) -> tuple[StackSample, ...]:
        # built directly (dataclasses.replace costs ~3 us a sample: 500 stacks x 512 snapshots)
        out = tuple(
            StackSample(fn.get(s.stack, s.stack), s.outstanding_bytes, s.count, s.addresses) for s in ss
        )
        if len({s.stack for s in out}) == len(out):
            return out  # no two became one (adding source lines never merges stacks)
        merged: dict[Stack, StackSample] = {}
        for s in ss:
            new = fn.get(s.stack, s.stack)
            old = merged.get(new)
            if old is None:
                merged[new] = dataclasses.replace(s, stack=new)
            else:
                count = None if old.count is None or s.count is None else old.count + s.count
                merged[new] = StackSample(
                    new, old.outstanding_bytes + s.outstanding_bytes, count, old.addresses + s.addresses
                )
        return tuple(merged.values())

    snapshots = tuple(dataclasses.replace(s, stacks=samples(s.stacks)) for s in inv.snapshots)
    findings: list[Finding] = [dataclasses.replace(f, stack=fn.get(f.stack, f.stack)) for f in inv.findings]
    return dataclasses.replace(inv, snapshots=snapshots, findings=tuple(findings))


def with_sources(findings: tuple[Finding, ...], limit: int = SNIPPETS) -> tuple[Finding, ...]:
    """The first ``limit`` findings with the source lines of their allocating line, when known."""
    out = []
    for i, finding in enumerate(findings):
        frame = allocating_frame(finding.stack) if i < limit and finding.source is None else None
        if frame is not None and frame.file and frame.line:
            out.append(dataclasses.replace(finding, source=read_snippet(frame.file, frame.line)))
        else:
            out.append(finding)
    return tuple(out)


def symbolize_investigation(
    inv: Investigation, symbolizer: Symbolizer, known: dict[Stack, Stack] | None = None
) -> Investigation:
    """Every stack of ``inv`` with source lines; the objects without debug info noted in data quality.

    ``known``: stacks annotated already by ``symbolizer`` (``LiveSymbols``). Stacks stay distinct
    (adding lines never merges two), so the findings keep their ranking."""
    stacks = {ss.stack for s in inv.snapshots for ss in s.stacks} | {f.stack for f in inv.findings}
    done = known or {}
    mapping = {st: done[st] if st in done else symbolizer.annotate_stack(st) for st in stacks}
    out = map_stacks(inv, mapping)
    out = dataclasses.replace(out, findings=with_sources(out.findings))
    notes = tuple(n for n in symbolizer.quality_notes() if n not in inv.quality.notes)
    if notes:
        q: DataQuality = inv.quality
        out = dataclasses.replace(out, quality=dataclasses.replace(q, notes=q.notes + notes))
    return out


class LiveSymbols:
    """Source lines for a live run's stacks, looked up in a thread while the probe stops.

    A probe takes seconds to stop (bpftrace finishes printing its maps, then detaches); the stacks
    seen by then are nearly all there will be. ``start`` annotates them in the background (the
    main thread only waits for the tool meanwhile); ``investigation`` waits for it and annotates
    what is left, as ``symbolize_live`` would (same result)."""

    def __init__(self, maps: tuple[Mapping, ...], root: str = "") -> None:
        self.symbolizer = Symbolizer(AddressSpace(maps, root) if maps else None)
        self.known: dict[Stack, Stack] = {}
        self._thread: threading.Thread | None = None

    def start(self, stacks: Iterable[Stack]) -> None:
        todo = tuple(stacks)
        self._thread = threading.Thread(target=self._annotate, args=(todo,), name="symbols", daemon=True)
        self._thread.start()

    def _annotate(self, stacks: tuple[Stack, ...]) -> None:
        try:
            for st in stacks:
                self.known[st] = self.symbolizer.annotate_stack(st)
        except Exception:  # whatever failed is looked up again (and raises) after the join
            _log.debug("background symbolization stopped", exc_info=True)

    def investigation(self, inv: Investigation) -> Investigation:
        """``inv`` symbolized (joins the thread; closes the symbolizer)."""
        if self._thread is not None:
            self._thread.join()
        try:
            return symbolize_investigation(inv, self.symbolizer, self.known)
        finally:
            self.symbolizer.close()


def symbolize_live(inv: Investigation, maps: tuple[Mapping, ...], root: str = "") -> Investigation:
    """``symbolize_investigation`` with the mappings read from the target during the run.

    With no mappings (the target was never readable) frames are still placed by module path when the
    tool printed one."""
    symbolizer = Symbolizer(AddressSpace(maps, root) if maps else None)
    try:
        return symbolize_investigation(inv, symbolizer)
    finally:
        symbolizer.close()
