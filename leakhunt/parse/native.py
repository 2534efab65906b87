"""Output of leakhunt's own probe (``leakhunt/probe/native_host.py``) -> ``model.Snapshot``.

One record per line; a snapshot runs from ``T`` to ``E``::

    leakhunt-native: attached 19 probes
    T 12:00:05 5.002
    S 4096 4 4 0 3
    F 0x000055d0c0a1b18b leaky_alloc+0x12 [leak]
    F 0x000055d0c0a1b1c2 main+0x21 [leak]
    F 0x00007f939ce4224a __libc_start_call_main+0x7a [libc.so.6]
    C calls=10 allocs=9 frees=5 blocks_full=0 stack_lost=0 aggs_full=0 inflight_full=0 tracked=4
    E

``T CLOCK SECONDS``: a snapshot starts (wall clock, seconds since counting started).
``S BYTES BLOCKS TRACKED VARIANCE NFRAMES``: one stack's outstanding bytes and blocks (estimates when
sampling by bytes), the blocks really tracked, the estimate's variance in units of (512 B)^2, then
NFRAMES ``F`` lines (address, then the symbol as BCC prints it). ``C``: the probe's counters so far
(allocations counted, frees matched, maps full, stacks lost). Lines starting ``leakhunt-native:`` are
status.
Stacks with the same frames add up. The parser never raises: lines it cannot read are counted in
``ParseStats``.

With ``--unwind dwarf`` a stack is one ``U KEY`` line instead of its ``F`` lines, and the first
snapshot with a key has its ``R KEY IP SP BP HEX`` line (registers and copied stack): the stack
becomes a single ``[stack to unwind]`` frame (address = KEY) and the copy is kept in ``raw`` for
``leakhunt.symbols.dwarfstacks`` to replace it (this module only reads text).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from leakhunt.model import UNWIND_PENDING, Frame, RawStack, Snapshot, Stack, StackSample
from leakhunt.parse import ParseStats, stream_snapshots
from leakhunt.parse.frames import cut_garbage, parse_bcc_frame

STATUS_PREFIX = "leakhunt-native:"
ATTACHED_PREFIX = "leakhunt-native: attached"
MAX_FRAMES = 256
VARIANCE_UNIT = 512.0  # bytes: the probe's variance is in units of VARIANCE_UNIT^2
MAX_LINE = 1 << 16

_T = re.compile(r"T (?P<clock>\d{1,2}:\d{2}:\d{2}) (?P<t>\d{1,12}(?:\.\d{1,9})?)")
_S = re.compile(
    r"S (?P<bytes>-?\d{1,20}) (?P<blocks>-?\d{1,20}) (?P<kept>-?\d{1,20}) (?P<var>-?\d{1,30}) (?P<n>\d{1,4})"
)
_U = re.compile(r"U (?P<key>\d{1,10})")
_R = re.compile(
    r"R (?P<key>\d{1,10}) 0x(?P<ip>[0-9a-f]{1,16}) 0x(?P<sp>[0-9a-f]{1,16}) 0x(?P<bp>[0-9a-f]{1,16})"
    r" (?P<data>(?:[0-9a-f]{2}){0,65536})"
)
MAX_RAW = 1 << 16  # stack copies kept (one per key; the probe has at most 16384 keys)
_C = re.compile(r"C(?P<pairs>(?: [a-z_]{1,30}=-?\d{1,20}){0,40})")
_PAIR = re.compile(r"([a-z_]{1,30})=(-?\d{1,20})")


@dataclass
class _Row:
    nbytes: int
    blocks: int
    kept: int
    var_units: int
    want: int
    frames: list[Frame] = field(default_factory=list)


@dataclass
class _Pending:
    clock: str
    t: float
    rows: list[_Row] = field(default_factory=list)


@dataclass(frozen=True)
class Uncertainty:
    """One stack's sampled estimate at the last snapshot: bytes ± one standard deviation."""

    stack: Stack
    estimate: int
    stddev: float
    tracked: int


class NativeParser:
    """Streaming parser of the native probe's output (one snapshot in memory at a time)."""

    def __init__(self, stats: ParseStats | None = None, *, sample_bytes: int = 0) -> None:
        self.stats = stats if stats is not None else ParseStats()
        self.sample_bytes = sample_bytes
        self.counters: dict[str, int] = {}
        self.uncertainty: tuple[Uncertainty, ...] = ()  # of the last complete snapshot
        self.raw: dict[int, RawStack] = {}  # --unwind dwarf: stack key -> registers and stack copy
        self._pending: _Pending | None = None
        self._row: _Row | None = None
        self._finished = False

    def feed(self, line: str) -> Snapshot | None:
        self.stats.lines += 1
        line = line.rstrip("\r\n")
        if len(line) > MAX_LINE:
            self.stats.bad_line(line)
            return None
        if line.startswith("F ") and self._row is not None and len(self._row.frames) < self._row.want:
            frame = parse_bcc_frame(line[2:])
            if frame is None:
                self.stats.bad_line(line)
                return None
            self._row.frames.append(frame)
            return None
        if line.startswith("U ") and self._pending is not None and self._pending.rows:
            m = _U.fullmatch(line)
            row = self._pending.rows[-1]
            if m is None or row.frames:
                self.stats.bad_line(line)
                return None
            row.frames.append(Frame(UNWIND_PENDING, address=int(m.group("key"))))
            row.want = 1
            return None
        self._row = None
        if line.startswith("R "):
            m = _R.fullmatch(line)
            if m is None or len(self.raw) >= MAX_RAW:
                self.stats.bad_line(line[:200])
                return None
            self.raw[int(m.group("key"))] = RawStack(
                int(m.group("ip"), 16), int(m.group("sp"), 16), int(m.group("bp"), 16),
                bytes.fromhex(m.group("data")),
            )  # fmt: skip
            return None
        if line.startswith("S ") and self._pending is not None:
            m = _S.fullmatch(line)
            if m is None or int(m.group("n")) > MAX_FRAMES:
                self.stats.bad_line(line)
                return None
            row = _Row(
                int(m.group("bytes")), int(m.group("blocks")), int(m.group("kept")), int(m.group("var")),
                int(m.group("n")),
            )  # fmt: skip
            self._pending.rows.append(row)
            self._row = row if row.want else None
            return None
        if line.startswith("T "):
            m = _T.fullmatch(line)
            if m is None:
                self.stats.bad_line(line)
                return None
            previous = self._complete() if self._pending is not None and self._pending.rows else None
            self._pending = _Pending(m.group("clock"), float(m.group("t")))
            return previous
        if line.startswith("C"):
            m = _C.fullmatch(line)
            if m is None:
                self.stats.bad_line(line)
                return None
            self.counters.update((k, int(v)) for k, v in _PAIR.findall(m.group("pairs")))
            return None
        if line == "E":
            if self._pending is None:
                self.stats.bad_line(line)
                return None
            return self._complete()
        if line.startswith(STATUS_PREFIX) or not line.strip():
            return None
        self.stats.bad_line(line)
        return None

    def finish(self) -> Snapshot | None:
        """End of output: a snapshot cut off before its ``E`` is dropped (it may lack stacks)."""
        if self._pending is not None:
            self.stats.note("the probe's last snapshot was cut off and is left out")
            self._pending = None
        if not self._finished:
            self._finished = True
            self._report_counters()
        return None

    # --- internals ----------------------------------------------------------------------------

    def _complete(self) -> Snapshot:
        pending = self._pending
        assert pending is not None
        self._pending = None
        self._row = None
        merged: dict[Stack, list[int]] = {}
        for row in pending.rows:
            if len(row.frames) != row.want:
                self.stats.bad_line(f"S ... {row.want} (only {len(row.frames)} frames followed)")
            frames, garbage = cut_garbage(tuple(row.frames))
            if garbage is not None:
                self.stats.callers_lost(garbage)
            self.stats.check_end(frames)
            stack = Stack(frames)
            self.stats.unknown_frames += sum(1 for f in frames if f.is_unknown)
            acc = merged.setdefault(stack, [0, 0, 0, 0])
            acc[0] += row.nbytes
            acc[1] += row.blocks
            acc[2] += row.kept
            acc[3] += row.var_units
        samples = tuple(
            StackSample(stack, nbytes, blocks)
            for stack, (nbytes, blocks, _kept, _var) in merged.items()
            if nbytes > 0 or blocks > 0
        )
        if self.sample_bytes:
            self.uncertainty = tuple(
                Uncertainty(stack, nbytes, math.sqrt(max(var, 0)) * VARIANCE_UNIT, kept)
                for stack, (nbytes, _blocks, kept, var) in merged.items()
            )
        return Snapshot(t=pending.t, stacks=samples, clock=pending.clock)

    def _report_counters(self) -> None:
        c = self.counters
        if not c:
            return
        self.stats.lost_events += c.get("inflight_full", 0)
        self.stats.dropped_stacks += c.get("stack_lost", 0)
        full = c.get("blocks_full", 0)
        if full:
            self.stats.map_full = True
            self.stats.note(
                f"{full} allocations were not tracked: the map of live blocks was full (raise --map-keys)"
            )
        if c.get("aggs_full", 0):
            self.stats.map_full = True
            self.stats.note(f"{c['aggs_full']} allocations were not tracked: too many distinct stacks")
        if c.get("stack_lost", 0):
            self.stats.note(
                f"{c['stack_lost']} allocations have no stack (the stack map was full or two stacks "
                "collided): they are counted under [no stack]"
            )
        if c.get("inflight_full", 0):
            self.stats.note(f"{c['inflight_full']} allocator calls were missed: too many threads at once")
        if c.get("replaced", 0):
            self.stats.note(
                f"{c['replaced']} addresses were returned again while still tracked: their free went "
                "unseen (a function leakhunt does not probe freed them)"
            )
        self.stats.allocations_seen = c.get("allocs", 0)
        self.stats.frees_seen = c.get("frees", 0)
        left_out = c.get("sampled_out", 0)
        if left_out:
            self.stats.note(
                f"{left_out} of {c.get('calls', 0)} allocator calls were left out by the size filters or "
                "sampling options"
            )
        if self.sample_bytes and self.uncertainty:
            total = sum(u.estimate for u in self.uncertainty)
            sd = math.sqrt(sum(u.stddev**2 for u in self.uncertainty))
            kept = sum(u.tracked for u in self.uncertainty)
            # names are known here only when the probe walked frame pointers (--unwind dwarf unwinds
            # and merges stacks later): then the largest stacks' own figures are named too
            named = [u for u in self.uncertainty if u.stack.frames and not u.stack.frames[0].is_unknown]
            top = sorted(named, key=lambda u: -u.estimate)[:5] if len(named) == len(self.uncertainty) else []
            per_stack = "; ".join(
                f"{u.stack.top} {u.estimate} B ± {u.stddev:.0f} B ({u.tracked} sampled blocks)" for u in top
            )
            self.stats.note(
                f"sampled by bytes (one sample per {self.sample_bytes} B on average, Poisson): outstanding "
                f"bytes are unbiased estimates; at the last snapshot {total} B ± {sd:.0f} B in all (one "
                f"standard deviation, from {kept} sampled blocks); a stack's own uncertainty is at most "
                "that, about 1/sqrt(its sampled blocks) of its estimate"
                + (f"; largest stacks: {per_stack}" if per_stack else "")
            )


def parse_native(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[Snapshot]:
    """Every complete snapshot in ``lines``."""
    return stream_snapshots(NativeParser(stats), lines)
