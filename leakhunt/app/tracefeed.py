"""Trace text -> the per-call matcher: ``leakhunt.parse`` reads the lines, ``leakhunt.analyze.trace``
matches the events (the loop of `import` over millions of lines, and ``replay`` for a whole log).

Plain memleak -t tuples are read a block at a time (``parse.trace_block.parse_tuple_block``) and
matched with array operations (``TraceMatcher.match_block``); every other line goes through
``feed_line`` (``TraceParser.feed_fields``, then the matcher), in order. bpftrace's lines are sorted
by time first (``analyze.trace.SORT_WINDOW_S``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from leakhunt.analyze.trace import SORT_WINDOW_S, TraceMatcher, TraceSummary
from leakhunt.model import AllocatorInfo, BackendInfo, RunInfo, Target, TraceProcess, TraceResult, TupleBlock
from leakhunt.parse import ParseStats
from leakhunt.parse.trace import TraceParser
from leakhunt.parse.trace_block import parse_tuple_block

AHEAD = 3  # blocks read ahead: the one being matched and the next ones, parsed or being parsed
BLOCK_CHARS = 2 << 20  # bytes of text parsed and matched at a time by feed_blocks


def feed_lines(matcher: TraceMatcher, lines: Iterable[str], stats: ParseStats | None = None) -> TraceParser:
    """Parse trace text (memleak -t or leakhunt's bpftrace trace output) into ``matcher``.

    ``lines``: lines, or blocks of whole lines (a piece not ending in a newline is one line
    without it). Returns the parser (what the notes said: target, thread owners, end time).
    """
    ends = ((piece if piece.endswith("\n") else piece + "\n") for piece in lines)
    return feed_blocks(matcher, (piece.encode("utf-8", "surrogatepass") for piece in ends), stats)


def feed_blocks(
    matcher: TraceMatcher, blocks: Iterable[bytes], stats: ParseStats | None = None
) -> TraceParser:
    """``feed_lines`` for UTF-8 text (``inputfile.read_byte_blocks``): pieces of whole lines, the
    last one perhaps without its newline.

    Blocks are parsed (``parse_tuple_block``: pure, numpy, mostly without the GIL) ahead of the one
    being matched, by a worker thread and by this thread: when the block to match next is still
    being parsed, this thread parses a later one that the worker has not started, instead of
    waiting. Two threads, both busy, on two cores: two parse threads beside this one took 2.7
    CPU-s for 1.8 CPU-s of work on the bench log (the threads hand the GIL to each other at every
    numpy call, and both cores' numpy work competes for the caches; forked parse processes did
    no better). Blocks are matched in order, one at a time, as without the threads.
    """
    parser = TraceParser(stats)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leakhunt-parse")
    try:
        ahead: deque[_Ahead] = deque()
        pieces = _whole_blocks(blocks)
        more = True
        while True:
            while more and len(ahead) < AHEAD:
                data = next(pieces, None)
                if data is None:
                    more = False
                else:
                    ahead.append(_Ahead(data, pool.submit(parse_tuple_block, data)))
            if not ahead:
                return parser
            head = ahead.popleft()
            if not head.parsed.done():
                for later in reversed(ahead):  # the last one: the worker reaches it last
                    if later.take():
                        break
            _feed_block(matcher, parser, head.data, head.block())
    finally:  # (an error, or Ctrl-C: the blocks read ahead are not parsed)
        pool.shutdown(cancel_futures=True)


class _Ahead:
    """A block read ahead, and its parse: the worker's (a future) or this thread's."""

    def __init__(self, data: bytes, parsed: Future[TupleBlock]) -> None:
        self.data = data
        self.parsed = parsed
        self._mine: TupleBlock | None = None

    def take(self) -> bool:
        """Parse it here if the worker has not started it; whether it was."""
        if self._mine is not None or not self.parsed.cancel():
            return False
        self._mine = parse_tuple_block(self.data)
        return True

    def block(self) -> TupleBlock:
        return self._mine if self._mine is not None else self.parsed.result()


def _whole_blocks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces joined into blocks of about ``BLOCK_CHARS`` bytes, each ending in a newline."""
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size >= BLOCK_CHARS - (BLOCK_CHARS >> 2):  # (a read of BLOCK_CHARS, less its last line)
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            pending.clear()
            size = 0
            yield data if data.endswith(b"\n") else data + b"\n"
    if pending:
        data = b"".join(pending)
        if data:
            yield data if data.endswith(b"\n") else data + b"\n"


def feed_line(matcher: TraceMatcher, parser: TraceParser, line: str) -> None:
    """One line through ``parser`` and, if it is an event, into ``matcher`` (the reference path:
    ``feed_lines`` gives the same result, faster)."""
    fields = parser.feed_fields(line)
    if fields is None:
        return
    if parser.bpftrace_lines:
        if matcher.sort_window_s <= 0:
            matcher.sort_window_s = SORT_WINDOW_S
        matcher.event(fields)
        return
    matcher.dispatch(fields)


def replay(
    lines: Iterable[str],
    stats: ParseStats | None = None,
    *,
    bucket_s: float = 1.0,
    pids: Iterable[int] | None = None,
    older_than_s: float = 0.0,
) -> TraceSummary:
    """Parse and match a whole trace log (memleak -t or leakhunt's bpftrace trace output)."""
    matcher = TraceMatcher(bucket_s=bucket_s, pids=pids)
    parser = feed_lines(matcher, lines, stats)
    return matcher.summary(older_than_s=older_than_s, end_time=parser.end_time)


def _feed_block(matcher: TraceMatcher, parser: TraceParser, data: bytes, block: TupleBlock) -> None:

    def line_at(i: int) -> str:
        return data[block.starts[i] : block.ends[i]].decode("utf-8", "surrogatepass")

    if parser.bpftrace_lines or matcher.sort_window_s > 0 or not block.plain.any():
        for line in data.decode("utf-8", "surrogatepass").split("\n")[: block.lines]:
            feed_line(matcher, parser, line)
        return
    parser.stats.lines += int(np.count_nonzero(block.plain))
    parser.memleak_lines = True
    others = np.flatnonzero(~block.plain)
    cuts = np.searchsorted(block.line, others).tolist()
    lo = 0
    for number, hi in zip(others.tolist(), cuts, strict=True):
        if hi > lo:
            _match(matcher, parser, block, lo, hi, line_at=line_at)
        lo = hi
        feed_line(matcher, parser, line_at(number))
    if lo < len(block.line):
        _match(matcher, parser, block, lo, len(block.line), line_at=line_at)


def _match(
    matcher: TraceMatcher,
    parser: TraceParser,
    block: TupleBlock,
    lo: int,
    hi: int,
    *,
    line_at: Callable[[int], str],
) -> None:
    """Events lo..hi of ``block`` (plain memleak events, their lines counted already): as arrays
    where ``match_block`` can, the others one line at a time."""
    while lo < hi:
        # a bpftrace line among the others switches to the sorting buffer: one at a time from then
        step = hi - lo if parser.bpftrace_lines else matcher.match_block(block, lo, hi, parser.tid_pid)
        if not step:
            return
        for number in block.line[lo : lo + step].tolist():
            feed_line(matcher, parser, line_at(number))
            parser.stats.lines -= 1
        lo += step


def build_result(
    summary: TraceSummary,
    stats: ParseStats,
    *,
    target: Target,
    backend: BackendInfo,
    run: RunInfo,
    notes: Iterable[str] = (),
    only_pid: int | None = None,
    allocator: AllocatorInfo | None = None,
) -> TraceResult:
    """A TraceResult from a matcher's summary (shared by live `trace` and `import`)."""
    processes: tuple[TraceProcess, ...] = summary.processes
    notes = list(notes)
    if only_pid is not None:
        others = [p for p in processes if p.pid != only_pid]
        processes = tuple(p for p in processes if p.pid == only_pid)
        if others:
            notes.append(
                f"{sum(p.alloc_count + p.free_count for p in others)} events of {len(others)} other "
                "process(es) interleaved in the trace pipe were left out"
            )
    unknown = sum(p.unknown_frees for p in processes)
    if backend.name == "bcc" and unknown:
        notes.append(
            f"{unknown} free(s) of blocks whose allocation is not in the trace: memleak prints only "
            "frees of blocks it saw allocated, so trace lines are missing (lost, or read by another "
            "trace_pipe reader)"
        )
    if summary.missed_frees:
        notes.append(
            f"{summary.missed_frees} allocation(s) reused an address still outstanding: "
            "their frees were lost (lost events?)"
        )
    if summary.merged_threads:
        notes.append(
            f"{summary.merged_threads} thread(s) were merged into their process because they freed "
            "each other's blocks (the trace names threads only)"
        )
    return TraceResult(
        target=target,
        backend=backend,
        run=run,
        processes=processes,
        end_time=summary.end_time,
        rate=summary.rate,
        quality=stats.quality(notes=tuple(n for n in notes if n not in stats.notes)),
        allocator=allocator,
    )
