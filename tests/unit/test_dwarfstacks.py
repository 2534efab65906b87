"""DwarfStacks: a stack key whose copy never came is named so, counted in data quality, and
unwound once its copy arrives (the host program asks for it again)."""

from __future__ import annotations

import os

from leakhunt.model import DataQuality, RawStack
from leakhunt.symbols.dwarfstacks import NOT_SENT, DwarfStacks


def test_a_key_without_its_copy_is_said_and_resolved_when_the_copy_comes() -> None:
    raw: dict[int, RawStack] = {}
    stacks = DwarfStacks(os.getpid(), raw)
    try:
        assert [f.symbol for f in stacks.stack(7).frames] == [NOT_SENT]
        (note,) = [n for n in stacks.quality(DataQuality()).notes if "no frames" in n]
        assert note.startswith("1 stacks have no frames")
        # the copy comes at a later snapshot: an ip outside any code, so one '[callers lost]' frame
        raw[7] = RawStack(ip=0x10, sp=0x1000, bp=0, data=b"")
        assert [f.symbol for f in stacks.stack(7).frames] != [NOT_SENT]
        assert not [n for n in stacks.quality(DataQuality()).notes if "no frames" in n]
    finally:
        stacks.close()
