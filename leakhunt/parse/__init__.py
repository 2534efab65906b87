"""Pure parsers: tool output lines -> model objects. No files, no processes, never raise on input.

One module per tool output:

- ``memleak``: BCC memleak's periodic stack blocks (0.2x-0.3x, ``-a``, ``--combined-only``) and
  libbpf-tools memleak blocks -> ``Snapshot``;
- ``bpftrace``: bpftrace ``-f json`` events and plain text maps of leakhunt's probe protocol ->
  ``Snapshot``;
- ``native``: the output of leakhunt's own probe (``leakhunt/probe/native_host.py``) -> ``Snapshot``;
- ``trace``: per-call events (memleak ``-t`` tuples, leakhunt's bpftrace trace script) -> ``TraceEvent``;
- ``frames``: one stack frame of any of these tools -> ``Frame``;
- ``detect``: which of the above a captured log is.

Every parser takes an optional ``ParseStats`` that counts what could not be parsed; the counts end
up in the report's data-quality section (``ParseStats.quality()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from leakhunt.model import DataQuality, Frame, Snapshot
from leakhunt.parse.frames import ends_early

MAX_EXAMPLES = 5
_MAX_EXAMPLE_CHARS = 300
_MAX_NOTES = 50


@dataclass
class ParseStats:
    """A mutable accumulator shared by the parsers of one run (not frozen on purpose)."""

    lines: int = 0
    unparsed: int = 0
    unparsed_examples: list[str] = field(default_factory=list)
    lost_events: int = 0
    notes: list[str] = field(default_factory=list)
    unknown_frames: int = 0
    garbage_stacks: int = 0  # stacks cut at a garbage frame (parse.frames.cut_garbage)
    short_example: str | None = None  # the outermost frame of a stack that ends early
    _short: set[tuple[Frame, ...]] = field(default_factory=set, repr=False)
    dropped_stacks: int = 0  # stacks a probe could not store (native backend)
    map_full: bool = False  # a probe map filled up (native backend; bpftrace's "Map full" errors)
    # allocations counted and frees of counted blocks, from a probe that counts them (native)
    allocations_seen: int | None = None
    frees_seen: int | None = None

    def bad_line(self, line: str) -> None:
        """Count a line no parser understood; keep the first few verbatim for the report."""
        self.unparsed += 1
        if len(self.unparsed_examples) < MAX_EXAMPLES:
            self.unparsed_examples.append(line[:_MAX_EXAMPLE_CHARS])

    def note(self, text: str) -> None:
        """Record a remark once (duplicates are dropped, and the list is bounded)."""
        if text not in self.notes and len(self.notes) < _MAX_NOTES:
            self.notes.append(text)

    def callers_lost(self, reason: str) -> None:
        """A stack was cut at a frame that is not a code address (``frames.cut_garbage``)."""
        self.garbage_stacks += 1
        if self.garbage_stacks > 1:
            return
        self.note(
            "callers lost: code without frame pointers (the stack walk read data as return addresses, "
            f"first seen: {reason}); such stacks end in a '[callers lost]' frame and were merged on "
            "the part before it. Fix: rebuild the program with -fno-omit-frame-pointer"
        )

    def check_end(self, frames: tuple[Frame, ...]) -> None:
        """Count a distinct stack that ends before the program's entry (``frames.ends_early``)."""
        if len(self._short) < 100_000 and frames not in self._short and ends_early(frames):
            self._short.add(frames)
            if self.short_example is None:
                self.short_example = frames[-1].display()

    def quality(self, **extra: object) -> DataQuality:
        """The counts as a ``model.DataQuality``; ``extra`` sets or overrides its other fields.

        ``notes`` given in ``extra`` are appended to the parser's own notes.
        """
        notes = list(self.notes)
        if self._short:
            notes.append(
                f"{len(self._short)} stacks end before main or a thread start (e.g. at "
                f"{self.short_example}): the frame-pointer walk lost their callers in code built without "
                "frame pointers (plain gcc -O2, Debian's libc). Fix: --backend native (DWARF unwinding), "
                "or rebuild with -fno-omit-frame-pointer"
            )
        quality = DataQuality(
            lost_events=self.lost_events,
            unparsed_lines=self.unparsed,
            unparsed_examples=tuple(self.unparsed_examples),
            unknown_frames=self.unknown_frames,
            dropped_stacks=self.dropped_stacks,
            map_full=self.map_full,
            notes=tuple(notes),
        )
        if "notes" in extra:
            more = extra.pop("notes")
            if isinstance(more, str):
                more = (more,)
            if not isinstance(more, tuple | list):
                raise TypeError("notes must be a sequence of strings")
            extra["notes"] = quality.notes + tuple(str(n) for n in more)
        return replace(quality, **extra)  # type: ignore[arg-type]


__all__ = ["MAX_EXAMPLES", "ParseStats", "lines_of"]


def lines_of(pieces: Iterable[str]) -> Iterator[str]:
    """The lines of text pieces that each hold whole lines (``read_blocks``' blocks, or lines)."""
    for piece in pieces:
        if piece.find("\n", 0, len(piece) - 1) < 0:  # one line
            yield piece
            continue
        lines = piece.split("\n")
        last = lines.pop()
        for line in lines:
            yield line + "\n"
        if last:
            yield last


class LineParser(Protocol):
    """The streaming interface of MemleakParser and BpftraceParser: push lines, get snapshots."""

    def feed(self, line: str) -> Snapshot | None: ...

    def finish(self) -> Snapshot | None: ...


def stream_snapshots(parser: LineParser, lines: Iterable[str]) -> Iterator[Snapshot]:
    """Pull form of a push parser: every snapshot ``parser`` completes over ``lines``, the last one
    (completed only by the end of the input) included."""
    for line in lines:
        snapshot = parser.feed(line)
        if snapshot is not None:
            yield snapshot
    last = parser.finish()
    if last is not None:
        yield last
