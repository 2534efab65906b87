"""Which tool printed a captured log: looks at its first lines only (the log is streamed).

Kinds: ``memleak`` (periodic stack blocks, BCC or libbpf-tools), ``memleak-trace`` (memleak -t
tuples), ``bpftrace-trace`` (leakhunt's bpftrace trace lines), ``bpftrace`` (text maps) and
``bpftrace-json`` (``-f json``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from leakhunt.parse import lines_of

KINDS = ("memleak", "memleak-trace", "bpftrace-trace", "bpftrace", "bpftrace-json")
PEEK_LINES = 500

_MEMLEAK = re.compile(r"\s*\[\d{1,2}:\d{1,2}:\d{1,2}\] Top \d+ stacks with outstanding allocations:")
# pasted memleak output often lacks the header: its stack lines say it too
_MEMLEAK_STACK = re.compile(r"\s*\d{1,20} bytes in \d{1,20} allocations? from stack")
_TUPLE = re.compile(r"\(b?['\"].*, \d+, \d+, b?['\"].*['\"], [\d.]+, b?['\"](alloc|free) (entered|exited)")
_BT_EVENT = re.compile(r"[AF] \d+ \d+ \d+ [0-9a-fA-F]+")
_MEMLEAK_GREETING = re.compile(r"Attaching to (pid \d+|kernel allocators), Ctrl\+C to quit\.")
_BT_JSON = re.compile(r'\{"type": ?"(time|map|printf|attached_probes|lost_events)"')
_BT_TEXT = re.compile(r"@[\w.]*\[.*|Attaching \d+ probes?\.\.\.")

DESCRIPTIONS = {
    "memleak": "memleak periodic stack blocks",
    "memleak-trace": "memleak -t per-call trace (Python tuples)",
    "bpftrace-trace": "leakhunt bpftrace per-call trace",
    "bpftrace": "bpftrace text maps",
    "bpftrace-json": "bpftrace -f json maps",
}


@dataclass(frozen=True)
class Detection:
    kind: str | None  # None when nothing looked like any tool's output
    evidence: str  # the first line that decided it (for the user), or why nothing did
    lines_read: int

    def describe(self) -> str:
        if self.kind is None:
            return self.evidence
        return f"{DESCRIPTIONS[self.kind]} (from line {self.evidence!r})"


def detect_kind(lines: Iterable[str]) -> tuple[Detection, Iterator[str]]:
    """Detect the kind from the first lines; returns it with an iterator over ALL the lines.

    ``lines`` may also be pieces of text that hold whole lines (``inputfile.read_blocks``); the
    iterator returned gives the same pieces.
    """
    it = iter(lines)
    pieces: list[str] = []
    head: list[str] = []
    while len(head) < PEEK_LINES:
        piece = next(it, None)
        if piece is None:
            break
        pieces.append(piece)
        head.extend(itertools.islice(lines_of([piece]), PEEK_LINES - len(head)))
    scores = dict.fromkeys(KINDS, 0)
    first: dict[str, str] = {}
    for line in head:
        text = line.rstrip("\r\n")
        kind = _classify(text)
        if kind is not None:
            scores[kind] += 1
            first.setdefault(kind, text.strip()[:120])
    best = max(KINDS, key=lambda k: scores[k])
    rest = itertools.chain(pieces, it)
    if scores[best] == 0:
        # no block and no event, but memleak's greeting: a memleak run that printed nothing else
        # (it crashed, or was stopped before its first interval); its parser says which
        greeting = next((x.strip() for x in head if _MEMLEAK_GREETING.match(x.strip())), None)
        if greeting is not None:
            return Detection("memleak", greeting, len(head)), rest
        why = f"none of the first {len(head)} lines looks like memleak or bpftrace output"
        return Detection(None, why, len(head)), rest
    return Detection(best, first[best], len(head)), rest


def _classify(text: str) -> str | None:
    if _MEMLEAK.match(text) or _MEMLEAK_STACK.fullmatch(text):
        return "memleak"
    if text.startswith("(") and _TUPLE.match(text):
        return "memleak-trace"
    if _BT_EVENT.match(text):
        return "bpftrace-trace"
    if text.startswith("{") and _BT_JSON.match(text):
        return "bpftrace-json"
    if _BT_TEXT.fullmatch(text.strip()):
        return "bpftrace"
    return None
