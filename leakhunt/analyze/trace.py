"""Per-call trace analysis: match frees to allocations by address, per process.

Rules:
- addresses are matched within one process (an address space); a block allocated by one thread
  and freed by another is matched all the same;
- realloc arrives as a free of the old block and an allocation of the new one (memleak prints it
  so, and leakhunt's bpftrace trace script too);
- a free of an address not allocated during the trace (allocated before it started) is counted in
  ``unknown_frees``, never an error;
- an allocation at an address that is still outstanding means its free was missed (lost event):
  the older block is dropped and counted in ``missed_frees``.

memleak ``-t`` names threads only. When nothing says which process a thread belongs to (no
``leakhunt: tid N pid M`` line), threads that free each other's blocks are merged into one process
(they share an address space), represented by the smallest thread id (the main thread's id is its
process id).

Memory: the outstanding allocations, plus one small counter per rate bucket. The input is streamed.

The matcher takes events already parsed (``model.TraceEvent``, ``model.TraceFields`` tuples, or a
``model.TupleBlock`` of memleak -t events as arrays); reading text into them is the parsers' job
(``leakhunt.parse.trace``, ``leakhunt.parse.trace_block``), driven by ``leakhunt.app.tracefeed``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Literal

import numpy as np
import numpy.typing as npt

from leakhunt.model import TraceEvent, TraceFields, TraceProcess, TupleBlock, Unfreed

MAX_RATE_BUCKETS = 240
# How far apart (seconds) an allocation and its free may arrive out of order. bpftrace reads its
# per-CPU buffers one after the other, so a thread that moved CPU can have its free printed first.
REORDER_WINDOW_S = 1.0
# bpftrace's per-CPU buffers deliver whole runs of events late (captured here: 55 ms). Its events
# are sorted by timestamp through a buffer this deep (seconds of events); memleak -t's come from
# the kernel's trace pipe, already in order.
SORT_WINDOW_S = 0.5
_PURGE_EVERY = 4096
_MIN_ARRAY_EVENTS = 16  # fewer events between two other lines: line by line is cheaper


Words = npt.NDArray[np.uint64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class _Outstanding:
    """One process's outstanding blocks: address -> (size, tid, time), in the order a dict would
    hold them (a block allocated again at its address without a free keeps its place).

    Two disjoint parts: a dict for blocks added one event at a time, and arrays sorted by address
    for blocks added by ``match_block`` (a few numpy operations per block of events, no Python
    work per event, 40 bytes per block). A sequence number per block gives the order across both.
    """

    def __init__(self) -> None:
        self.recent: dict[int, tuple[int, int, float, int]] = {}  # address -> (size, tid, t, seq)
        self.addr: Words = np.empty(0, np.uint64)
        self.ints: Ints = np.empty((0, 3), np.int64)  # size, tid, seq (-1: freed one at a time)
        self.t: npt.NDArray[np.float64] = np.empty(0, np.float64)
        self.dead = 0

    def __len__(self) -> int:
        return len(self.recent) + len(self.addr) - self.dead

    def _find(self, address: int) -> int:
        """The index of ``address`` in the arrays if it is outstanding there, else -1."""
        if not len(self.addr) or not 0 <= address < 1 << 64:
            return -1
        i = int(np.searchsorted(self.addr, np.uint64(address)))
        if i < len(self.addr) and int(self.addr[i]) == address and self.ints[i, 2] >= 0:
            return i
        return -1

    def __contains__(self, address: int) -> bool:
        return address in self.recent or self._find(address) >= 0

    def put(self, address: int, size: int, tid: int, t: float, seq: int) -> bool:
        """The block at ``address`` is (size, tid, t); ``seq`` orders it if it is new. Returns
        whether one was outstanding there already (its place is kept)."""
        old = self.recent.get(address)
        if old is not None:
            self.recent[address] = (size, tid, t, old[3])
            return True
        i = self._find(address)
        if i < 0:
            self.recent[address] = (size, tid, t, seq)
            return False
        if _fits(size) and _fits(tid):
            self.ints[i, :2] = size, tid
            self.t[i] = t
        else:  # (sizes of 20 digits) kept in the dict, in its place
            self.recent[address] = (size, tid, t, int(self.ints[i, 2]))
            self.ints[i, 2] = -1
            self.dead += 1
        return True

    def pop(self, address: int) -> bool:
        """Free the block at ``address``; whether there was one."""
        if self.recent.pop(address, None) is not None:
            return True
        i = self._find(address)
        if i < 0:
            return False
        self.ints[i, 2] = -1
        self.dead += 1
        return True

    def items(self) -> list[tuple[int, tuple[int, int, float, int]]]:
        """(address, (size, tid, t, seq)) of every block, in order."""
        self.settle()
        order = np.argsort(self.ints[:, 2], kind="stable")
        ints = self.ints[order].T.tolist()
        out = list(
            zip(
                self.addr[order].tolist(),
                zip(ints[0], ints[1], self.t[order].tolist(), ints[2], strict=True),
                strict=True,
            )
        )
        if self.recent:
            out.extend(self.recent.items())
            out.sort(key=lambda kv: kv[1][3])
        return out

    def unfreed(self, end: float, older_than_s: float) -> tuple[Unfreed, ...]:
        """The blocks allocated ``older_than_s`` or more before ``end``, by time (in order among
        equal times)."""
        if not self.settle():  # (a block beyond the arrays: one at a time)
            return tuple(
                Unfreed(address, size, tid, t)
                for address, (size, tid, t, _) in sorted(self.items(), key=lambda kv: kv[1][2])
                if end - t >= older_than_s
            )
        order = np.lexsort((self.ints[:, 2], self.t))
        t = self.t[order]
        old = order[end - t >= older_than_s]
        ints = self.ints[old].T.tolist()
        return tuple(map(Unfreed, self.addr[old].tolist(), ints[0], ints[1], self.t[old].tolist()))

    def settle(self) -> bool:
        """Everything into the arrays (blocks freed one at a time leave them); False when some
        block does not fit them (an address or size beyond 64 bits stays in the dict)."""
        if self.dead:
            self._keep(self.ints[:, 2] >= 0)
            self.dead = 0
        if not self.recent:
            return True
        moving = [(a, v) for a, v in self.recent.items() if 0 <= a < 1 << 64 and _fits(v[0]) and _fits(v[1])]
        n = len(moving)
        if n:
            ints = np.array([(v[0], v[1], v[3]) for _, v in moving], np.int64).reshape(n, 3)
            t = np.fromiter((v[2] for _, v in moving), np.float64, n)
            self._insert(np.fromiter((a for a, _ in moving), np.uint64, n), ints, t)
        if n == len(self.recent):
            self.recent.clear()
            return True
        for a, _ in moving:
            del self.recent[a]
        return False

    def _keep(self, keep: Bools) -> None:
        self.addr, self.ints, self.t = self.addr[keep], _from_rows(_rows(self.ints)[keep]), self.t[keep]

    def _insert(self, addr: Words, ints: Ints, t: npt.NDArray[np.float64]) -> None:
        """New blocks (addresses not outstanding) into the sorted arrays."""
        order = np.argsort(addr, kind="stable")
        at = np.searchsorted(self.addr, addr[order])
        self.addr = np.insert(self.addr, at, addr[order])
        self.ints = _from_rows(np.insert(_rows(self.ints), at, _rows(ints)[order]))
        self.t = np.insert(self.t, at, t[order])

    def where(self, keys: Words) -> tuple[Ints, Bools]:
        """For sorted addresses ``keys`` (after ``settle``): their index in the arrays, and
        whether each is outstanding."""
        at = np.searchsorted(self.addr, keys)
        found = np.zeros(len(keys), np.bool_)
        inside = at < len(self.addr)
        found[inside] = self.addr[at[inside]] == keys[inside]
        return at, found

    def apply(
        self,
        at: Ints,
        gone: Bools,
        kept: Bools,
        values: tuple[Words, Ints, npt.NDArray[np.float64]],
        fresh: Bools,
    ) -> None:
        """One block's changes, per address (sorted, ``where``'s ``at``): ``gone`` ones are
        freed, ``kept`` ones take new values (size, tid) and times in place, ``fresh`` ones are
        added (values: size, tid, seq)."""
        addr, ints, t = values
        where = at[kept]
        self.ints[where, :2] = ints[kept, :2]
        self.t[where] = t[kept]
        if gone.any():
            keep = np.ones(len(self.addr), np.bool_)
            keep[at[gone]] = False
            self._keep(keep)
        if fresh.any():
            self._insert(addr[fresh], _from_rows(_rows(ints)[fresh]), t[fresh])


_ROW = np.dtype((np.void, 24))  # a row of _Outstanding.ints (size, tid, seq) as one item


def _rows(ints: Ints) -> npt.NDArray[np.void]:
    """(n, 3) int64 -> n items of 24 bytes: row selections and insertions as one-dimensional
    operations, several times faster than numpy's on rows."""
    return np.ascontiguousarray(ints).view(_ROW).reshape(len(ints))


def _from_rows(rows: npt.NDArray[np.void]) -> Ints:
    return rows.view(np.int64).reshape(len(rows), 3)


def _stable_order(keys: Words) -> Ints:
    """``np.argsort(keys, kind="stable")``. When each key leaves room for its index in 64 bits
    (user-space addresses do), one sort of key << bits | index: numpy's vectorised sort, several
    times faster than its stable one."""
    n = len(keys)
    bits = max(n - 1, 1).bit_length()
    if not n or int(keys.max()) >> (64 - bits):
        return np.argsort(keys, kind="stable")
    combined = (keys << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
    combined.sort()
    return (combined & np.uint64((1 << bits) - 1)).astype(np.int64)


def _distinct(values: Ints, tries: int = 8) -> list[int]:
    """The distinct values (a few threads: one pass each, cheaper than sorting)."""
    found: list[int] = []
    rest = values
    while len(rest):
        if len(found) == tries:
            return sorted(set(found) | set(np.unique(rest).tolist()))
        v = int(rest[0])
        found.append(v)
        rest = rest[rest != v]
    return found


def _fits(value: int) -> bool:
    return -(1 << 63) <= value < 1 << 63


@dataclass
class _Process:
    pid: int
    comm: str
    pid_known: bool
    outstanding: _Outstanding = field(default_factory=_Outstanding)
    allocs: int = 0
    frees: int = 0
    unknown_frees: int = 0
    missed_frees: int = 0
    # frees of addresses not (yet) allocated: address -> time. An allocation printed after its own
    # free (per-CPU buffers reorder events across CPUs) cancels one; the rest become unknown frees
    pending: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class UnfreedGroup:
    """Unfreed blocks sharing a size (``key`` = size) or a thread (``key`` = tid)."""

    key: int
    count: int
    bytes: int
    oldest: float  # earliest allocation time in the group (same clock as the events)
    newest: float


@dataclass(frozen=True)
class TraceSummary:
    """What the matcher found (the parts of ``model.TraceResult`` that come from the events)."""

    processes: tuple[TraceProcess, ...]
    rate: tuple[tuple[float, int, int], ...]  # (seconds since the first event, allocs, bytes)
    start_time: float | None  # first event timestamp
    end_time: float  # last event timestamp (0.0 when there was none)
    events: int
    missed_frees: int  # allocations at an address still outstanding: a free was lost
    merged_threads: int  # thread groups merged because they freed each other's blocks


class TraceMatcher:
    """Streaming alloc/free matcher. Feed events (or parser fields, or blocks of them); ask
    ``summary()`` at the end."""

    def __init__(
        self, *, bucket_s: float = 1.0, pids: Iterable[int] | None = None, sort_window_s: float = 0.0
    ) -> None:
        """``pids``: keep only these processes (the traced target); None keeps every process.
        ``sort_window_s`` > 0: events may arrive that late; they are put in time order first."""
        self.bucket_s = bucket_s if bucket_s > 0 else 1.0
        self.only = frozenset(pids) if pids is not None else None
        self._procs: dict[int, _Process] = {}
        self._alias: dict[int, int] = {}  # merged thread group -> its representative
        self._rate: dict[int, list[int]] = {}
        self._t0: float | None = None  # first event's time: rate buckets count from it
        self._t_start = float("inf")  # earliest event time (events may arrive out of order)
        self._t_end = 0.0
        self.events = 0
        self.merged = 0
        self.sort_window_s = sort_window_s
        self._heap: list[tuple[float, int, TraceFields]] = []
        self._seq = 0  # orders the sorting buffer's events, and the outstanding blocks
        self._latest = float("-inf")

    # --- input ------------------------------------------------------------------------------

    def add(self, event: TraceEvent) -> None:
        """One event (pid known when it differs from the thread id)."""
        if event.kind == "alloc":
            self.alloc(
                event.t,
                event.pid,
                event.tid,
                event.comm,
                event.address,
                event.size or 0,
                pid_known=event.pid != event.tid,
            )
        else:
            self.free(
                event.t, event.pid, event.tid, event.comm, event.address, pid_known=event.pid != event.tid
            )

    def alloc(  # noqa: PLR0917 - positional on purpose: called once per traced event
        self, t: float, pid: int, tid: int, comm: str, address: int, size: int, *, pid_known: bool = True
    ) -> None:
        """An allocation of ``size`` bytes at ``address`` by thread ``tid`` of ``pid``."""
        proc = self._process(pid, comm, pid_known)
        if proc is None:
            return
        self._tick(t)
        proc.allocs += 1
        t0 = self._t0 if self._t0 is not None else t
        index = int((t - t0) // self.bucket_s)
        bucket = self._rate.get(index)
        if bucket is None:
            self._rate[index] = [1, size]
        else:
            bucket[0] += 1
            bucket[1] += size
        if proc.pending:
            freed_at = proc.pending.get(address)
            if freed_at is not None and freed_at >= t:
                del proc.pending[address]  # its free was printed before it: allocated and freed
                proc.frees += 1
                return
        if proc.outstanding.put(address, size, tid, t, self._seq):
            proc.missed_frees += 1
        self._seq += 1

    def free(self, t: float, pid: int, tid: int, comm: str, address: int, *, pid_known: bool = True) -> None:
        """A free of ``address`` by thread ``tid`` of ``pid``."""
        proc = self._process(pid, comm, pid_known)
        if proc is None:
            return
        self._tick(t)
        if proc.outstanding.pop(address):
            proc.frees += 1
            return
        if not proc.pid_known:
            other = self._owner_elsewhere(proc, address)
            if other is not None:
                proc = self._merge(proc, other)
                proc.outstanding.pop(address)
                proc.frees += 1
                return
        if address in proc.pending:
            proc.unknown_frees += 1  # the earlier free of this address was no reordering
        proc.pending[address] = t
        if self.events % _PURGE_EVERY == 0:
            self._purge(t - REORDER_WINDOW_S)

    def _purge(self, before: float) -> None:
        """Pending frees older than the reorder window are frees of blocks from before the trace."""
        for proc in self._procs.values():
            old = [a for a, t in proc.pending.items() if t < before]
            for address in old:
                del proc.pending[address]
            proc.unknown_frees += len(old)

    def event(self, fields: TraceFields) -> None:
        """One parsed event (``TraceParser.feed_fields``), through the sorting buffer if enabled."""
        if self.sort_window_s <= 0:
            self.dispatch(fields)
            return
        t = fields[1]
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fields))
        self._latest = max(self._latest, t)
        ready = self._latest - self.sort_window_s
        heap = self._heap
        while heap and heap[0][0] <= ready:
            self.dispatch(heapq.heappop(heap)[2])

    def flush(self) -> None:
        """Match what the sorting buffer still holds (end of input)."""
        while self._heap:
            self.dispatch(heapq.heappop(self._heap)[2])

    def dispatch(self, fields: TraceFields) -> None:
        """One parsed event, matched now (not through the sorting buffer)."""
        kind, t, pid, tid, comm, address, size, known = fields
        if kind == "alloc":
            self.alloc(t, pid, tid, comm, address, size or 0, pid_known=known)
        else:
            self.free(t, pid, tid, comm, address, pid_known=known)

    def match_block(self, block: TupleBlock, lo: int, hi: int, tid_pid: Mapping[int, int]) -> int:
        """Events lo..hi of ``block`` (plain memleak events, nothing else between them), matched
        with array operations when they are the common case: one process, in time order, and no
        free that could be the reordered twin of an allocation. ``tid_pid``: the processes of the
        threads named so far (``TraceParser.tid_pid``).

        Returns 0 when the events are matched (or belong to a process not kept), otherwise how
        many events from ``lo`` the caller must feed one at a time (their ``TraceFields``, through
        ``dispatch``) before calling again with the rest. Either way the result is what feeding
        every event one at a time gives (same counts, blocks, dict order).
        """
        if self.sort_window_s > 0 or hi - lo < _MIN_ARRAY_EVENTS:
            return hi - lo
        tids = block.tid[lo:hi]
        owners: set[int] = set()
        known_flags: set[bool] = set()
        for tid in _distinct(tids):
            mapped = tid_pid.get(tid)
            known_flags.add(mapped is not None)
            pid = tid if mapped is None else mapped
            owners.add(self._alias.get(pid, pid))
        if len(owners) != 1 or len(known_flags) != 1:
            return hi - lo
        (pid,) = owners
        (known,) = known_flags
        proc = self._procs.get(pid)
        if proc is None:
            if self.only is not None and pid not in self.only:
                return 0  # another process's events: not counted (as _process says)
            return 1  # its first event one at a time creates it, with its comm
        t = block.t[lo:hi]
        if t[0] < self._t_end or (np.diff(t) < 0).any():
            return hi - lo
        address = block.address[lo:hi]
        is_alloc = block.is_alloc[lo:hi]
        n = hi - lo
        # events grouped by address (in time order within a group): each group's first event
        # meets the block as it was before (outstanding or not), the others their predecessor
        order = _stable_order(address)
        by_addr, alloc_s, t_s = address[order], is_alloc[order], t[order]
        first = np.ones(n, np.bool_)
        first[1:] = by_addr[1:] != by_addr[:-1]
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        outstanding = proc.outstanding
        if not outstanding.settle():
            return hi - lo  # a block beyond the arrays (a 20-digit size) is outstanding
        keys = by_addr[starts]
        at, was_out = outstanding.where(keys)
        prev_alloc = np.zeros(n, np.bool_)
        prev_alloc[1:] = alloc_s[:-1]
        out_before = np.where(first, was_out[group], prev_alloc)
        unmatched = ~alloc_s & ~out_before  # frees of blocks not outstanding: pending / unknown
        if unmatched.any():
            if (
                not proc.pid_known
                and not known
                and any(p is not proc and not p.pid_known for p in self._procs.values())
            ):
                return hi - lo  # its block may be another group's
            # an allocation at the time of a pending free of its address cancels it
            twin = np.zeros(n, np.bool_)
            twin[1:] = alloc_s[1:] & unmatched[:-1] & ~first[1:] & (t_s[1:] == t_s[:-1])
            if twin.any():
                return hi - lo
        if proc.pending:
            pending_at = [proc.pending.get(a) for a in address[is_alloc].tolist()]
            if any(f is not None and f >= at for f, at in zip(pending_at, t[is_alloc].tolist(), strict=True)):
                return hi - lo
        # --- nothing can differ from the line-by-line path: apply ---
        if known and not proc.pid_known:
            proc.pid_known = True
        base = self.events
        self.events += n
        self._t_start = min(self._t_start, float(t[0]))
        self._t_end = float(t[-1])
        n_alloc = int(np.count_nonzero(is_alloc))
        proc.allocs += n_alloc
        proc.missed_frees += int(np.count_nonzero(alloc_s & out_before))
        proc.frees += int(np.count_nonzero(~alloc_s & out_before))
        self._count_rate(t[is_alloc], block.size[lo:hi][is_alloc])
        if unmatched.any():
            for i in np.sort(order[unmatched]).tolist():
                a, freed_at = int(address[i]), float(t[i])
                if a in proc.pending:
                    proc.unknown_frees += 1
                proc.pending[a] = freed_at
                if (base + i + 1) % _PURGE_EVERY == 0:
                    self._purge(freed_at - REORDER_WINDOW_S)
        # the dict as the line-by-line path leaves it, keys in the same order: blocks freed in
        # the block go; a block allocated again without a free is replaced where it is; a block
        # outstanding at the end is (re)inserted where its last run of allocations began
        has_free = np.logical_or.reduceat(~alloc_s, starts)
        last = np.append(starts[1:], n) - 1
        ends_alloc = alloc_s[last]
        run_start = alloc_s & ~(prev_alloc & ~first)
        insert_at = np.maximum.reduceat(np.where(run_start, np.arange(n), -1), starts)
        in_place = ends_alloc & was_out & ~has_free
        fresh = ends_alloc & ~in_place
        # per address: its last event's size and thread, and its place: the event that (re)inserted
        # it, counted on from the matcher's sequence
        ints = np.stack(
            (block.size[lo:hi][order][last], tids[order][last], self._seq + order[insert_at]), axis=1
        )
        outstanding.apply(at, was_out & has_free, in_place, (keys, ints, t_s[last]), fresh)
        self._seq += n
        return 0

    def _count_rate(self, t: npt.NDArray[np.float64], size: npt.NDArray[np.int64]) -> None:
        """Allocations at times ``t`` (in order) into the rate buckets, as ``alloc`` counts them."""
        if not len(t) or self._t0 is None:
            return
        index = np.floor_divide(t - self._t0, self.bucket_s).astype(np.int64)
        change = np.flatnonzero(np.diff(index)) + 1
        begin = np.concatenate(([0], change))
        counts = np.diff(np.append(begin, len(t))).tolist()
        sums = np.add.reduceat(size, begin).tolist()
        for k, c, b in zip(index[begin].tolist(), counts, sums, strict=True):
            bucket = self._rate.get(k)
            if bucket is None:
                self._rate[k] = [c, b]
            else:
                bucket[0] += c
                bucket[1] += b

    # --- output -----------------------------------------------------------------------------

    def summary(self, *, older_than_s: float = 0.0, end_time: float | None = None) -> TraceSummary:
        """Processes with their unfreed blocks (only those older than ``older_than_s`` at the end).

        ``end_time`` is when tracing stopped, on the events' clock, when known (ages are measured
        to it); otherwise the last event's time.
        """
        self.flush()
        if end_time is not None and end_time > self._t_end:
            self._t_end = end_time
        self._purge(float("inf"))
        processes = []
        missed = 0
        for proc in sorted(self._procs.values(), key=lambda p: p.pid):
            missed += proc.missed_frees
            unfreed = proc.outstanding.unfreed(self._t_end, older_than_s)
            processes.append(
                TraceProcess(
                    pid=proc.pid,
                    comm=proc.comm,
                    alloc_count=proc.allocs,
                    free_count=proc.frees,
                    unknown_frees=proc.unknown_frees,
                    unfreed=unfreed,
                )
            )
        processes.sort(key=lambda p: (-p.unfreed_bytes, p.pid))
        return TraceSummary(
            processes=tuple(processes),
            rate=self._rate_series(),
            start_time=None if self._t0 is None else min(self._t0, self._t_start),
            end_time=self._t_end,
            events=self.events,
            missed_frees=missed,
            merged_threads=self.merged,
        )

    # --- internals --------------------------------------------------------------------------

    def _tick(self, t: float) -> None:
        self.events += 1
        if self._t0 is None:
            self._t0 = t
        elif t < self._t_start:
            self._t_start = t
        self._t_end = max(self._t_end, t)

    def _process(self, pid: int, comm: str, pid_known: bool) -> _Process | None:
        pid = self._alias.get(pid, pid)
        proc = self._procs.get(pid)
        if proc is None:
            if self.only is not None and pid not in self.only:
                return None
            proc = _Process(pid, comm, pid_known)
            self._procs[pid] = proc
        elif pid_known and not proc.pid_known:
            proc.pid_known = True
        return proc

    def _owner_elsewhere(self, proc: _Process, address: int) -> _Process | None:
        for other in self._procs.values():
            if other is not proc and not other.pid_known and address in other.outstanding:
                return other
        return None

    def _merge(self, a: _Process, b: _Process) -> _Process:
        """Merge two thread groups of one process; the smaller id represents both."""
        keep, gone = (a, b) if a.pid < b.pid else (b, a)
        for address, (size, tid, t, _) in gone.outstanding.items():  # as dict.update orders them
            keep.outstanding.put(address, size, tid, t, self._seq)
            self._seq += 1
        keep.allocs += gone.allocs
        keep.frees += gone.frees
        keep.unknown_frees += gone.unknown_frees
        keep.missed_frees += gone.missed_frees
        keep.pending.update(gone.pending)
        del self._procs[gone.pid]
        self._alias[gone.pid] = keep.pid
        for alias, target in self._alias.items():
            if target == gone.pid:
                self._alias[alias] = keep.pid
        self.merged += 1
        return keep

    def _rate_series(self) -> tuple[tuple[float, int, int], ...]:
        if not self._rate:
            return ()
        lo, hi = min(self._rate), max(self._rate)  # lo < 0 when events arrived out of order
        factor = max(1, -(-(hi - lo + 1) // MAX_RATE_BUCKETS))  # coarser buckets for long traces
        merged: dict[int, list[int]] = {}
        for index, (n, size) in self._rate.items():
            slot = merged.setdefault((index - lo) // factor, [0, 0])
            slot[0] += n
            slot[1] += size
        width = self.bucket_s * factor
        empty = [0, 0]
        return tuple(
            (lo * self.bucket_s + k * width, merged.get(k, empty)[0], merged.get(k, empty)[1])
            for k in range((hi - lo) // factor + 1)
        )


def group_by_size(unfreed: Sequence[Unfreed]) -> tuple[UnfreedGroup, ...]:
    """Unfreed blocks grouped by size, most bytes first."""
    return group_columns(*unfreed_columns(unfreed), by="size")


def group_by_thread(unfreed: Sequence[Unfreed]) -> tuple[UnfreedGroup, ...]:
    """Unfreed blocks grouped by allocating thread, most bytes first."""
    return group_columns(*unfreed_columns(unfreed), by="tid")


UnfreedColumns = tuple[Sequence[Unfreed], Ints | None, Ints | None, npt.NDArray[np.float64] | None]


def unfreed_columns(unfreed: Sequence[Unfreed]) -> UnfreedColumns:
    """The blocks, with their sizes, threads and times as arrays (None, None, None when a size or
    a thread id is beyond 64 bits, or the sizes could add up beyond them: the groups are then
    summed in Python)."""
    n = len(unfreed)
    try:
        size = np.fromiter(map(attrgetter("size"), unfreed), np.int64, n)
        tid = np.fromiter(map(attrgetter("tid"), unfreed), np.int64, n)
    except OverflowError:
        return unfreed, None, None, None
    if n and (int(size.min()) < 0 or int(size.max()) >= (1 << 63) // n):
        return unfreed, None, None, None
    return unfreed, size, tid, np.fromiter(map(attrgetter("time"), unfreed), np.float64, n)


def group_columns(
    unfreed: Sequence[Unfreed],
    size: Ints | None,
    tid: Ints | None,
    t: npt.NDArray[np.float64] | None,
    *,
    by: Literal["size", "tid"],
) -> tuple[UnfreedGroup, ...]:
    """``unfreed_columns``' blocks grouped by size or by thread, most bytes first (then most
    blocks, then the key): a few array operations (an import leaves tens of thousands)."""
    if size is None or tid is None or t is None:
        return _group(unfreed, (lambda u: u.size) if by == "size" else (lambda u: u.tid))
    if not len(size):
        return ()
    keys = size if by == "size" else tid
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    first = np.ones(len(k), np.bool_)
    first[1:] = k[1:] != k[:-1]
    starts = np.flatnonzero(first)
    count = np.diff(np.append(starts, len(k)))
    total = np.add.reduceat(size[order], starts)
    times = t[order]
    oldest, newest = np.fmin.reduceat(times, starts), np.fmax.reduceat(times, starts)
    key = k[starts]
    rank = np.lexsort((key, -count, -total))
    return tuple(
        map(
            UnfreedGroup,
            key[rank].tolist(),
            count[rank].tolist(),
            total[rank].tolist(),
            oldest[rank].tolist(),
            newest[rank].tolist(),
        )
    )


def _group(unfreed: Sequence[Unfreed], key_of: Callable[[Unfreed], int]) -> tuple[UnfreedGroup, ...]:
    acc: dict[int, list[float]] = {}
    for u in unfreed:
        key, t = key_of(u), u.time
        row = acc.get(key)
        if row is None:
            acc[key] = [1, u.size, t, t]
        else:
            row[0] += 1
            row[1] += u.size
            row[2] = min(row[2], t)
            row[3] = max(row[3], t)
    groups = [UnfreedGroup(k, int(r[0]), int(r[1]), r[2], r[3]) for k, r in acc.items()]
    groups.sort(key=lambda g: (-g.bytes, -g.count, g.key))
    return tuple(groups)
