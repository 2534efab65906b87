"""Replace the native probe's ``[stack to unwind]`` frames with unwound frames named to the line.

The native probe (``--unwind dwarf``) keys each allocation's stack by a hash of the copied stack and
sends each key's registers and stack copy once (``parse.native.NativeParser.raw``). ``DwarfStacks``
unwinds each key once with the target's mappings (read again when a new key needs them, so a library
loaded later is found), names its frames, and rewrites snapshots: keys that unwind to the same
frames become one stack, their bytes and blocks added.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping

from leakhunt.model import UNWIND_PENDING, DataQuality, Frame, RawStack, Snapshot, Stack, StackSample
from leakhunt.symbols.maps import AddressSpace, read_maps
from leakhunt.symbols.symbolize import Symbolizer
from leakhunt.symbols.unwind import STOP_ADVICE, ObjectCache, Registers, unwind

NOT_SENT = "[callers lost] the probe's stack copy never reached leakhunt"


class DwarfStacks:
    def __init__(self, pid: int, raw: Mapping[int, RawStack]) -> None:
        self.pid = pid
        self.raw = raw
        self.objects = ObjectCache()
        self.space = AddressSpace(read_maps(pid))
        self.symbolizer = Symbolizer(self.space, self.objects)
        self.stacks: dict[int, Stack] = {}
        self.stops: Counter[str] = Counter()  # incomplete walks by reason
        self.unwound = 0
        self.not_sent: set[int] = set()  # keys whose copy has not come (yet)

    def stack(self, key: int) -> Stack:
        known = self.stacks.get(key)
        if known is not None:
            return known
        raw = self.raw.get(key)
        if raw is None:
            self.not_sent.add(key)
            return Stack((Frame(NOT_SENT),))
        self.not_sent.discard(key)
        walked = unwind(Registers(raw.ip, raw.sp, raw.bp), raw.data, self.space, self.objects)
        if walked.stop == "not-code" and len(walked.pcs) <= 1:
            # a library mapped after the last read: read the mappings again and retry
            fresh = read_maps(self.pid)
            if fresh:
                self.space = AddressSpace(fresh)
                self.symbolizer.space = self.space
                walked = unwind(Registers(raw.ip, raw.sp, raw.bp), raw.data, self.space, self.objects)
        # the ip is the allocator's return address in its caller: every pc is a return address
        stack = self.symbolizer.stack_from_unwound(walked, first_is_return=True)
        self.unwound += 1
        if not walked.complete:
            self.stops[walked.stop] += 1
        self.stacks[key] = stack
        return stack

    def refresh(self) -> None:
        """Read the target's mappings again (call while it lives, before new keys are unwound)."""
        fresh = read_maps(self.pid)
        if fresh:
            self.space = AddressSpace(fresh)
            self.symbolizer.space = self.space

    def apply(self, snap: Snapshot) -> Snapshot:
        """``snap`` with every pending stack unwound (stacks that unwind alike are added up)."""
        if not any(_pending_key(s.stack) is not None for s in snap.stacks):
            return snap
        if any(
            (k := _pending_key(s.stack)) is not None and k not in self.stacks and k in self.raw
            for s in snap.stacks
        ):
            self.refresh()
        merged: dict[Stack, StackSample] = {}
        for sample in snap.stacks:
            key = _pending_key(sample.stack)
            stack = self.stack(key) if key is not None else sample.stack
            old = merged.get(stack)
            if old is None:
                merged[stack] = dataclasses.replace(sample, stack=stack)
            else:
                count = None if old.count is None or sample.count is None else old.count + sample.count
                merged[stack] = StackSample(
                    stack,
                    old.outstanding_bytes + sample.outstanding_bytes,
                    count,
                    old.addresses + sample.addresses,
                )
        return dataclasses.replace(snap, stacks=tuple(merged.values()))

    def quality(self, q: DataQuality) -> DataQuality:
        """``q`` with what the unwinding could not do, and how to fix it."""
        notes = list(q.notes)
        for reason, n in self.stops.most_common():
            notes.append(
                f"{n} of {self.unwound} stacks could not be unwound to the program's entry (they end in a "
                f"'[callers lost]' frame): {STOP_ADVICE.get(reason, reason)}"
            )
        if self.not_sent:
            notes.append(
                f"{len(self.not_sent)} stacks have no frames ({NOT_SENT!r}): a burst of new stacks "
                "pushed their copies out of the probe's room for 1,024 before they were read (a stack "
                "that allocates again is copied again)"
            )
        truncated = q.truncated_stacks + self.stops.get("depth", 0) + self.stops.get("copy-short", 0)
        notes += [n for n in self.symbolizer.quality_notes() if n not in notes]
        return dataclasses.replace(q, notes=tuple(notes), truncated_stacks=truncated)

    def close(self) -> None:
        self.objects.close()


def _pending_key(stack: Stack) -> int | None:
    if len(stack.frames) == 1 and stack.frames[0].symbol == UNWIND_PENDING:
        return stack.frames[0].address
    return None
