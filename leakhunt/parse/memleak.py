"""memleak's periodic stack blocks -> ``model.Snapshot``, one per block.

BCC memleak (Python tool; ``\\t`` is a tab; the ``addr =`` lines only with ``-a``, all of them
before the stacks; the ``0x...`` address column from BCC 0.25 on, not with ``--combined-only``)::

    Attaching to pid 10785, Ctrl+C to quit.
    [08:46:22] Top 10 stacks with outstanding allocations:
    \\taddr = 563cd58debc0 size = 1024
    \\t16384 bytes in 16 allocations from stack
    \\t\\t0x0000563cc6a8f18b\\tleaky_alloc+0x12 [leak]
    \\t\\t0x0000563cc6a8f1c2\\tmain+0x21 [leak]

Old BCC versions indent with spaces and put blank lines between blocks. libbpf-tools memleak
(C) prints ``[8:5:3] Top 2 stacks ...`` (N = stacks shown), its stacks unindented and largest
first, and the ``addr =`` lines of each stack under its own header::

    [8:5:3] Top 2 stacks with outstanding allocations:
    16384 bytes in 16 allocations from stack
    \\taddr = 0x563cd58debc0 size = 1024
    \\t0 [<0000563cc6a8f18b>] leaky_alloc+0x12 [/tmp/leak]

Output pasted into tickets and articles often has no ``[HH:MM:SS] Top N`` header and has lost its
leading tabs (``30 bytes in 1 allocations from stack``, ``0x00007fc75f6a33ef      __strdup+0x1f
[libc.so.6]``): a stack or address line with no header before it opens a block of its own (one
snapshot, no clock), and the flavor is decided by the first frame line, not the indentation.

A block is complete when the next header arrives (``MemleakParser.feed`` returns it then) or at
the end of input (``finish``). Lines that are none of the above are counted in ``ParseStats``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from leakhunt.model import Frame, Snapshot, Stack, StackSample
from leakhunt.parse import ParseStats, stream_snapshots
from leakhunt.parse.frames import cut_garbage, parse_bcc_frame, parse_libbpf_frame

MAX_LINE = 8192  # longer lines are not memleak output (and would make regexes slow)
DAY = 86400

_HEADER = re.compile(
    r"\[(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})\] "
    r"Top (?P<n>\d{1,9}) stacks with outstanding allocations:"
)
_STACK = re.compile(
    r"(?P<indent>\s*)(?P<bytes>\d{1,20}) bytes in (?P<count>\d{1,20}) allocations? from stack"
)
_ADDR = re.compile(r"\s*addr = (?:0x)?(?P<addr>[0-9a-fA-F]{1,16}) size = (?P<size>\d{1,20})")
_LIBBPF_FRAME = re.compile(r"\s*\d{1,5} \[<[0-9a-fA-F]{1,16}>\].*")
# an unindented BCC frame (pasted): an address column, a symbol with an offset, or [unknown]
_BCC_FRAME_START = re.compile(r"0x[0-9a-fA-F]{1,16}\s|[^\s\[]+\+0x[0-9a-fA-F]+\b|\[unknown\]")
_TRACEBACK_START = "Traceback (most recent call last):"
_AT_EXIT = "Exception ignored in atexit callback"
# a traceback frame of memleak's snapshot printer: SIGINT came while it printed a block
_PRINTING = re.compile(r"\bin print_outstanding(_combined)?\b")
STOPPED_WHILE_PRINTING = (
    "memleak was stopped while printing a snapshot: that snapshot is left out (incomplete: the "
    "stacks it had not printed yet would read as freed)"
)


def stopped_while_printing(stderr: str) -> bool:
    """Whether memleak's ``stderr`` holds the KeyboardInterrupt traceback of a SIGINT that came
    while it printed a snapshot (between two sleeps: a SIGINT during its sleep exits quietly), so
    the block it printed last is cut short."""
    return _PRINTING.search(stderr) is not None and "KeyboardInterrupt" in stderr


_STATUS = (
    re.compile(r"Attaching to (?:pid \d+|kernel allocators), Ctrl\+C to quit\."),
    re.compile(r"Executing '.*' and tracing the resulting process\."),
    re.compile(r"child created with pid: \d+"),
    re.compile(r"received go event\. executing child command"),
    re.compile(r"(?:signaled|reaped) child process"),
)
_LOST_STACK = "stack information lost"


@dataclass
class _Stack:
    bytes: int
    count: int
    frames: list[Frame] = field(default_factory=list)
    addresses: list[tuple[int, int]] = field(default_factory=list)
    lost: bool = False


@dataclass
class _Block:
    clock: str
    t: float
    top_n: int
    stacks: list[_Stack] = field(default_factory=list)
    addresses: list[tuple[int, int]] = field(default_factory=list)


class MemleakParser:
    """Streaming parser of memleak's periodic output. Feed lines, collect snapshots.

    Memory is one block at a time. ``stats`` (shared with the caller) counts lines, unparsed lines
    and unknown frames, and collects notes (tool messages, crashes).
    """

    def __init__(self, stats: ParseStats | None = None) -> None:
        self.stats = stats if stats is not None else ParseStats()
        self._block: _Block | None = None
        self._stack: _Stack | None = None
        self._first_clock: int | None = None
        self._last_clock: int | None = None
        self._day_offset = 0
        self._in_traceback = False
        self._seen_stacks: set[tuple[Frame, ...]] = set()
        self.flavor: str | None = None  # "bcc" or "libbpf", once a stack or frame line told
        self._headerless = False
        self._at_exit = False  # inside "Exception ignored in atexit callback" (interrupted cleanup)
        self._tb_printing = False  # the traceback being read passes through the snapshot printer

    # --- public API -------------------------------------------------------------------------

    def feed(self, line: str) -> Snapshot | None:
        """Consume one line; return the previous block's Snapshot when this line starts a new one."""
        self.stats.lines += 1
        line = line.rstrip("\r\n")
        if len(line) > MAX_LINE:
            self.stats.bad_line(line)
            return None
        if self._in_traceback and self._traceback_line(line):
            return None
        header = _HEADER.match(line.strip())
        if header is not None:
            done = self._finish_block()
            self._start_block(header)
            return done
        self._body_line(line)
        return None

    def finish(self) -> Snapshot | None:
        """End of input: the last block, if any."""
        return self._finish_block()

    # --- lines ------------------------------------------------------------------------------

    def _traceback_line(self, line: str) -> bool:
        """Swallow a Python traceback (memleak crashed); True when the line belonged to it."""
        if line.startswith((" ", "\t")) or not line.strip() or line.lstrip().startswith("^"):
            self._tb_printing = self._tb_printing or _PRINTING.search(line) is not None
            return True
        self._in_traceback = False
        printing, self._tb_printing = self._tb_printing, False
        if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line):
            if self._at_exit and line.startswith("KeyboardInterrupt"):
                self._at_exit = False
                self.stats.note("memleak was interrupted while cleaning up at exit (its output is complete)")
                return True
            if printing and line.startswith("KeyboardInterrupt"):
                self._block, self._stack = None, None  # cut short: its missing stacks are not freed
                self.stats.note(STOPPED_WHILE_PRINTING)
                return True
            self.stats.note(f"memleak crashed: {line.strip()[:200]}")
            if "has no attribute 'decode'" in line:
                self.stats.note(
                    "BCC 0.26's memleak --combined-only crashes at every interval; run it without "
                    "--combined-only"
                )
            return True
        return False

    def _body_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            # blank lines separate blocks in old BCC output; they also end a stack's frames
            self._stack = None if self._stack is not None and self._stack.frames else self._stack
            return
        if text.startswith(_AT_EXIT):
            # BCC 0.31 (captured): SIGINT during BPF.cleanup() prints this, then a traceback.
            self._at_exit = True
            return
        if text == _TRACEBACK_START:
            self._in_traceback = True
            return
        m = _STACK.fullmatch(line)
        if m is not None:
            if m.group("indent"):
                self.flavor = self.flavor or "bcc"  # libbpf-tools does not indent its stack lines
            block = self._block or self._headerless_block()
            self._stack = _Stack(int(m.group("bytes")), int(m.group("count")))
            block.stacks.append(self._stack)
            return
        m = _ADDR.fullmatch(line)
        if m is not None:
            block = self._block or self._headerless_block()
            pair = (int(m.group("addr"), 16), int(m.group("size")))
            # libbpf-tools lists a stack's addresses under its header; BCC lists all of them first
            if self._stack is not None and not self._stack.frames:
                self._stack.addresses.append(pair)
            else:
                block.addresses.append(pair)
            return
        if self._stack is not None:
            if text == _LOST_STACK:
                self._stack.lost = True
                self.stats.note("memleak lost some stack traces (stack map full or hash collisions)")
                return
            frame = self._frame(line)
            if frame is not None:
                self._stack.frames.append(frame)
                return
        if any(p.fullmatch(text) for p in _STATUS):
            self.stats.note(text)
            return
        if text.startswith("WARNING:"):
            self.stats.note(text[:300])
            return
        self.stats.bad_line(line)

    def _frame(self, line: str) -> Frame | None:
        if _LIBBPF_FRAME.fullmatch(line):
            self.flavor = self.flavor or "libbpf"
            return parse_libbpf_frame(line)
        if self.flavor == "libbpf":
            return None
        if line[:1] not in ("\t", " ") and _BCC_FRAME_START.match(line) is None:
            return None  # unindented text that does not start like a frame (pasted prose)
        frame = parse_bcc_frame(line)
        if frame is not None:
            self.flavor = self.flavor or "bcc"
        return frame

    def _headerless_block(self) -> _Block:
        """A block for pasted output that lost its ``[HH:MM:SS] Top N`` header."""
        if not self._headerless:
            self._headerless = True
            self.stats.note(
                "no '[HH:MM:SS] Top N stacks' header before the stacks (pasted output?): "
                "they were read as one snapshot without a time"
            )
        self._block = _Block("", 0.0, 0)
        self._stack = None
        return self._block

    # --- blocks -----------------------------------------------------------------------------

    def _start_block(self, header: re.Match[str]) -> None:
        seconds = int(header.group("h")) * 3600 + int(header.group("m")) * 60 + int(header.group("s"))
        if self._first_clock is None:
            self._first_clock = seconds
        elif self._last_clock is not None and seconds + self._day_offset < self._last_clock:
            # the clock went back: past midnight (memleak prints local time of day only)
            self._day_offset += DAY
        absolute = seconds + self._day_offset
        self._last_clock = absolute
        clock = header.group(0)[1 : header.group(0).index("]")]
        self._block = _Block(clock, float(absolute - self._first_clock), int(header.group("n")))
        self._stack = None

    def _finish_block(self) -> Snapshot | None:
        block, self._block, self._stack = self._block, None, None
        if block is None:
            return None
        merged: dict[tuple[Frame, ...], StackSample] = {}
        for raw in block.stacks:
            frames, garbage = cut_garbage(tuple(raw.frames))
            if garbage is not None:
                self.stats.callers_lost(garbage)
            self.stats.check_end(frames)
            if frames not in self._seen_stacks:
                self._seen_stacks.add(frames)
                self.stats.unknown_frames += sum(1 for f in frames if f.is_unknown)
            old = merged.get(frames)
            if old is None:
                merged[frames] = StackSample(Stack(frames), raw.bytes, raw.count, tuple(raw.addresses))
            else:
                # two stack ids that symbolise alike (or lost stacks): one stack for analysis
                merged[frames] = StackSample(
                    old.stack,
                    old.outstanding_bytes + raw.bytes,
                    (old.count or 0) + raw.count,
                    old.addresses + tuple(raw.addresses),
                )
        truncated = block.top_n > 0 and len(block.stacks) >= block.top_n
        return Snapshot(
            t=block.t,
            stacks=tuple(merged.values()),
            clock=block.clock or None,
            truncated=truncated,
            top_n=block.top_n,
            addresses=tuple(block.addresses),
        )


def parse_memleak(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[Snapshot]:
    """Snapshots from memleak periodic output, streamed block by block."""
    return stream_snapshots(MemleakParser(stats), lines)
