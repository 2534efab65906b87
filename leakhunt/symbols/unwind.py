"""Unwind a copied user stack with the DWARF call-frame information of the objects it runs in.

The probe copies, once per new call stack, the registers at the allocator call (``ip``, ``sp``,
``bp``) and the top of the user stack from ``sp`` (``perf --call-graph dwarf`` does the same per
sample). Here, for each frame: find the object that maps ``pc``, its CFI row for ``pc`` (for a
return address, for ``pc - 1``: the call instruction), compute CFA = ``rsp`` or ``rbp`` + offset,
read the return address (and a saved ``rbp``) from the copy, and continue with ``sp`` = CFA.

Code without CFI falls back to the frame-pointer chain when ``rbp`` points into the copy.
Every walk ends with a reason (``Unwound.stop``) that reports show when the stack does not reach
the program's entry: the copy was too short, an object has no CFI, a rule leakhunt cannot evaluate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from leakhunt.symbols.elf import RBP, RSP, ElfObject
from leakhunt.symbols.maps import AddressSpace

MAX_FRAMES = 64

# Why a walk ended. "end" = the outermost frame (_start, clone, thread start): the stack is whole.
StopReason = str


@dataclass(frozen=True)
class Registers:
    ip: int
    sp: int
    bp: int


@dataclass(frozen=True)
class Unwound:
    """The program counters of the walk, innermost first (``pcs[0]`` is ``ip``), and why it ended.
    ``via_fp`` lists the indexes of frames found by the frame-pointer fallback."""

    pcs: tuple[int, ...]
    stop: StopReason
    stop_detail: str = ""
    via_fp: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return self.stop == "end"


class ObjectCache:
    """ElfObjects by path, opened once per run."""

    def __init__(self, debug_dirs: tuple[str, ...] | None = None) -> None:
        self._objects: dict[str, ElfObject] = {}
        self.debug_dirs = debug_dirs

    def get(self, path: str) -> ElfObject:
        obj = self._objects.get(path)
        if obj is None:
            obj = ElfObject(path) if self.debug_dirs is None else ElfObject(path, self.debug_dirs)
            self._objects[path] = obj
        return obj

    def close(self) -> None:
        for obj in self._objects.values():
            obj.close()
        self._objects.clear()


def unwind(
    regs: Registers,
    stack: bytes,
    space: AddressSpace,
    objects: ObjectCache,
    max_frames: int = MAX_FRAMES,
) -> Unwound:
    """Walk ``stack`` (the bytes at ``regs.sp`` and above) from ``regs``; see the module docstring."""
    base = regs.sp
    end = base + len(stack)

    def read(addr: int) -> int | None:
        if base <= addr and addr + 8 <= end:
            value: int = struct.unpack_from("<Q", stack, addr - base)[0]
            return value
        return None

    pcs = [regs.ip]
    via_fp: list[int] = []
    pc, sp, bp = regs.ip, regs.sp, regs.bp
    bp_known = True
    while len(pcs) < max_frames:
        mapping = space.find(pc)
        if mapping is None or not mapping.executable:
            return Unwound(
                tuple(pcs[:-1]) if len(pcs) > 1 else tuple(pcs),
                "not-code",
                f"{pc:#x} is not in an executable mapping",
                tuple(via_fp),
            )
        lookup = pc if len(pcs) == 1 else pc - 1
        rule = None
        obj = None
        if mapping.is_file:
            obj = objects.get(space.file_path(mapping))
            vaddr = obj.vaddr_of_offset(lookup - mapping.start + mapping.offset)
            rule = obj.cfa_rule(vaddr) if vaddr is not None else None
        if rule is not None and rule.outermost:
            return Unwound(tuple(pcs), "end", "", tuple(via_fp))
        if rule is None or rule.cfa_reg is None or (rule.cfa_reg == RBP and not bp_known):
            # no usable CFI here: try the frame-pointer chain
            ra = read(bp + 8) if bp_known and bp >= sp else None
            saved_bp = read(bp) if ra is not None else None
            if ra is None or saved_bp is None or ra == 0:
                name = mapping.path or "anonymous code"
                if rule is not None and rule.cfa_reg is None:
                    return Unwound(
                        tuple(pcs),
                        "cfi-expression",
                        f"{name}: a CFI rule leakhunt does not evaluate",
                        tuple(via_fp),
                    )
                if obj is not None and not obj.has_cfi():
                    return Unwound(
                        tuple(pcs), "no-cfi", f"{name} has no call-frame information", tuple(via_fp)
                    )
                return Unwound(tuple(pcs), "no-cfi", f"{name}: no call-frame row for {pc:#x}", tuple(via_fp))
            via_fp.append(len(pcs))
            sp, pc, bp = bp + 16, ra, saved_bp
            pcs.append(pc)
            continue
        cfa = (sp if rule.cfa_reg == RSP else bp) + rule.cfa_offset
        ra = read(cfa + (rule.ra_offset if rule.ra_offset is not None else -8))
        if ra is None:
            return Unwound(
                tuple(pcs),
                "copy-short",
                f"the stack copy ({len(stack)} bytes) ends before the caller's frame",
                tuple(via_fp),
            )
        if rule.rbp_offset is not None:
            saved = read(cfa + rule.rbp_offset)
            if saved is None:
                bp_known = False
            else:
                bp = saved
        if ra == 0:
            return Unwound(tuple(pcs), "end", "", tuple(via_fp))
        if cfa <= sp and len(pcs) > 1:
            return Unwound(tuple(pcs), "loop", f"the stack does not grow at {pc:#x}", tuple(via_fp))
        sp, pc = cfa, ra
        pcs.append(pc)
    return Unwound(tuple(pcs), "depth", f"stopped at {max_frames} frames", tuple(via_fp))


# Why a walk ended, for the report: what it means and what fixes it.
STOP_ADVICE: dict[str, str] = {
    "copy-short": "the stack was deeper than the copied part (8 KiB): the outer callers are missing",
    "no-cfi": "code without call-frame information and without frame pointers (JIT or hand-written "
    "code; or a stripped .eh_frame): rebuild it with -fno-omit-frame-pointer or keep its .eh_frame",
    "cfi-expression": "a call-frame rule leakhunt does not evaluate (a DWARF expression): rebuild with "
    "-fno-omit-frame-pointer to have the frame-pointer chain instead",
    "not-code": "a return address outside every mapped object (the stack was overwritten, or code was "
    "unmapped before leakhunt read the mappings)",
    "loop": "the stack did not grow between two frames (a corrupt stack or wrong call-frame information)",
    "depth": f"the stack is deeper than {MAX_FRAMES} frames",
}
