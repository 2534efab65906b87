"""Folded stacks, the text format of flamegraph.pl, inferno and speedscope: one line per stack,
frames outermost first joined by ``;``, a space, then a non-negative integer::

    __libc_start_call_main;main;handle;parse_request 1019904
    __libc_start_call_main;main;handle;open_session 509952

Frames are function names without offsets or addresses, so the call sites within one function
merge into one box, as in a flame graph of a CPU profile. Frames with no name keep their module
(``[unknown] [libc.so.6]``) so unknown code in two libraries stays apart. The format has no
escaping: a ``;`` inside a frame (rare, from C++ or hostile symbol names) becomes ``:``, and
control characters (newline, tab, CR...) become spaces, so every stack stays one line with the
right number of frames. Identical lines after this are summed; lines are sorted; stacks whose
value is 0 or negative are left out (flame graphs cannot draw them).

Values (``value=``): ``bytes`` outstanding bytes when last seen (default), ``growth`` bytes gained
over the run (see ``report.export``), ``count`` outstanding allocations.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import IO

from leakhunt.errors import UsageError
from leakhunt.model import Frame
from leakhunt.report.export import ExportStack, export_stacks
from leakhunt.report.jsonio import Document
from leakhunt.report.safetext import neutralize

VALUES: tuple[str, ...] = ("bytes", "growth", "count")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def frame_label(frame: Frame) -> str:
    """A frame as one folded-stack element: the function name, no offset, no ``;``, no newline."""
    text = frame.symbol
    if frame.symbol == "[unknown]" and frame.module:
        text = f"[unknown] [{frame.module}]"
    # line breaks would split the line; other controls (escapes, bidi) are shown as \xNN
    text = neutralize(_CONTROL.sub(" ", text)).replace(";", ":").strip()
    return text or "[unknown]"


def _value(stack: ExportStack, value: str) -> int:
    if value == "bytes":
        return stack.outstanding_bytes
    if value == "growth":
        return stack.growth_bytes
    return stack.count or 0


def folded_lines(doc: Document, value: str = "bytes") -> Iterator[str]:
    """The folded lines of ``doc`` (without newlines), sorted, identical stacks summed."""
    if value not in VALUES:
        raise UsageError(f"unknown folded value {value!r}", hint=f"choose among {', '.join(VALUES)}")
    totals: dict[str, int] = defaultdict(int)
    for stack in export_stacks(doc):
        n = _value(stack, value)
        if n <= 0:
            continue
        names = [frame_label(f) for f in reversed(stack.frames)] or ["[no stack]"]
        totals[";".join(names)] += n
    for key in sorted(totals):
        if totals[key] > 0:
            yield f"{key} {totals[key]}"


def render_folded(doc: Document, stream: IO[str], value: str = "bytes") -> None:
    """Write ``doc``'s stacks as folded lines to ``stream`` (see the module docstring)."""
    for line in folded_lines(doc, value):
        stream.write(line + "\n")
