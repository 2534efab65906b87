"""``leakhunt import``'s job: one captured memleak/bpftrace log -> an Investigation or a TraceResult.

Periodic stack output (memleak blocks, bpftrace maps) becomes snapshots and ranked findings, like
``investigate``; per-call traces (memleak -t, leakhunt's bpftrace trace) become a trace result,
like ``trace``. Files are streamed: a trace log of any length needs memory for its outstanding
allocations only. The command (``cli/importcmd.py``) parses options and prints.
"""

from __future__ import annotations

import ctypes
import itertools
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from leakhunt.analyze.trace import TraceMatcher
from leakhunt.app.common import run_info
from leakhunt.app.tracefeed import BLOCK_CHARS, build_result, feed_blocks
from leakhunt.errors import ReportError
from leakhunt.inputfile import open_input, read_byte_blocks
from leakhunt.interrupt import Interruption, sigterm_as_interrupt
from leakhunt.model import BackendInfo, BackendName, Investigation, Snapshot, Target, TraceResult
from leakhunt.parse import ParseStats, lines_of
from leakhunt.parse.detect import DESCRIPTIONS, detect_kind

_PID_NOTES = (
    re.compile(r"Attaching to pid (\d+), Ctrl\+C to quit\."),
    re.compile(r"leakhunt: (?:probing|tracing|attached) pid (\d+)"),
)
Document = Investigation | TraceResult
T = TypeVar("T")
_INTERRUPTED = "the import was interrupted: the reports cover the log's first {}"


def import_file(
    name: str,
    *,
    kind: str = "auto",
    min_growth: int = 4096,
    older_than_ms: int = 0,
    say: Callable[[str], object] | None = None,
) -> Document:
    """Read one captured log (``-`` = stdin) into an Investigation or a TraceResult.

    ``say`` receives what was detected (one line). Raises ReportError for unreadable files and
    for files holding nothing leakhunt understands.
    """
    echo: Callable[[str], object] = say or (lambda _: None)
    reading = _Reading()
    with ExitStack() as stack:
        raw, started_at = _open(name, stack)
        stop = stack.enter_context(sigterm_as_interrupt(raise_when=lambda: reading.now))
        blocks = reading.pieces(raw, stop)
        seen: list[bytes] = []  # what detection read, to be read again
        if kind == "auto":
            detection, _ = detect_kind(_decoded(blocks, seen))
            if detection.kind is None:
                raise ReportError(
                    f"{name}: {detection.evidence}",
                    hint="is it memleak or bpftrace output? Name the format with --kind",
                )
            kind = detection.kind
            echo(f"{name}: detected {detection.describe()}")
        else:
            echo(f"{name}: read as {DESCRIPTIONS[kind]} (--kind {kind})")
        rest = itertools.chain(seen, blocks)
        try:
            if kind in ("memleak-trace", "bpftrace-trace"):
                return _trace(name, rest, kind, started_at, older_than_ms / 1000, stop=stop)
            return _stacks(name, _decoded(rest), kind, started_at, min_growth, stop=stop)
        except UnicodeDecodeError as err:  # only with a strict decoder; ours replaces
            raise ReportError(f"{name}: not text ({err})") from err
        except OSError as err:
            raise ReportError(f"{name}: {err.strerror or err}") from err


def _open(name: str, stack: ExitStack) -> tuple[Iterator[bytes], str]:
    """Text of ``name`` (UTF-8) in blocks of whole lines (bytes that are no UTF-8 replaced, lines
    bounded in length) and the log's time (file mtime, or now for standard input and pipes).
    Devices and directories are refused."""
    stream, st = open_input(name)
    if name != "-":
        stack.callback(stream.close)
    if name == "-" or not stat.S_ISREG(st.st_mode):
        when = datetime.now(UTC)
    else:
        when = datetime.fromtimestamp(st.st_mtime, UTC)
    shown = "standard input" if name == "-" else name
    # blocks as large as the trace parser's: passed on without joining
    return read_byte_blocks(stream, shown, st, size=BLOCK_CHARS), when.isoformat(timespec="seconds")


def _decoded(blocks: Iterable[bytes], seen: list[bytes] | None = None) -> Iterator[str]:
    """The blocks as text; those read are kept in ``seen``."""
    for block in blocks:
        if seen is not None:
            seen.append(block)
        yield block.decode("utf-8")


def _backend(kind: str, name: str) -> BackendInfo:
    backend: BackendName = "bcc" if kind.startswith("memleak") else "bpftrace"
    return BackendInfo(
        name=backend,
        tool="import",
        version="",
        argv=("leakhunt", "import", name),
        reason=f"imported from {name} ({DESCRIPTIONS[kind]})",
    )


def _stacks(
    name: str, lines: Iterable[str], kind: str, started_at: str, min_growth: int, *, stop: Interruption
) -> Investigation:
    # (loaded here: a trace log needs none of them)
    from leakhunt.analyze.stacks import SnapshotWindow  # noqa: PLC0415
    from leakhunt.parse.bpftrace import parse_bpftrace  # noqa: PLC0415
    from leakhunt.parse.memleak import parse_memleak  # noqa: PLC0415

    stats = ParseStats()
    parse = parse_memleak if kind == "memleak" else parse_bpftrace
    # bounded: a long log keeps an evenly spaced window of its snapshots (as a live run does)
    window = SnapshotWindow()
    for snap in parse(lines_of(lines), stats):
        window.add(snap)
    snapshots = window.snapshots()
    if not snapshots:
        said = [n for n in stats.notes if "crash" in n or "combined-only" in n]
        raise ReportError(
            f"{name}: no snapshot found ({stats.lines} lines read, {stats.unparsed} not understood)"
            + "".join(f"\n  {n}" for n in said),
            hint="a log needs at least one block ('[HH:MM:SS] Top N stacks ...' or a bpftrace map)",
        )
    findings = window.findings(min_growth_bytes=min_growth)
    pid = _pid_from_notes(stats.notes)
    if stop.asked:  # (first: a partial result says so before anything else)
        stats.notes.insert(0, _INTERRUPTED.format(f"{window.taken} snapshot(s)"))
    notes = [f"imported from {name}: {stats.lines} lines, {window.taken} snapshots"]
    if window.stride > 1:
        notes.append(
            f"long capture: {len(snapshots)} of its {window.taken} snapshots kept, evenly spaced "
            f"(1 in {window.stride}), for the analysis and the reports"
        )
    if window.taken < 3:
        notes.append("fewer than 3 snapshots: growth cannot be judged reliably")
    if window.untracked:
        notes.append(
            f"the probe's map of live allocations was full: {sum(window.untracked.values()):,} allocations "
            f"of {len(window.untracked)} stack(s) were not tracked, and those stacks' verdicts are unknown"
        )
    return Investigation(
        target=Target(pid=pid or 0, comm=_comm(name), cmdline=()),
        backend=_backend(kind, name),
        # a periodic log does not say where it was captured
        run=run_info(
            started_at,
            snapshots[-1].t - snapshots[0].t,
            "interrupted" if stop.asked else "imported",
            host="",
            kernel="",
        ),
        interval_s=_interval(snapshots),
        snapshots=snapshots,
        findings=findings,
        quality=stats.quality(notes=tuple(notes), map_full=stats.map_full or bool(window.untracked)),
        options=(("min_growth_bytes", str(min_growth)), ("kind", kind)),
    )


def _trace(
    name: str,
    blocks: Iterable[bytes],
    kind: str,
    started_at: str,
    older_than_s: float,
    *,
    stop: Interruption,
) -> TraceResult:
    stats = ParseStats()
    matcher = TraceMatcher()
    _keep_freed_memory()
    parser = feed_blocks(matcher, blocks, stats)
    summary = matcher.summary(older_than_s=older_than_s, end_time=parser.end_time)
    if summary.events == 0:
        raise ReportError(
            f"{name}: no allocation or free found "
            f"({stats.lines} lines read, {stats.unparsed} not understood)",
            hint="memleak -t prints 'alloc exited, size = ..., result = ...' tuples",
        )
    if stop.asked:  # (first: a partial result says so before anything else)
        stats.notes.insert(0, _INTERRUPTED.format(f"{stats.lines:,} lines"))
    notes = [f"imported from {name}: {stats.lines} lines, {summary.events} events"]
    pid = parser.target_pid
    if pid is None:
        pid = _pid_from_notes(stats.notes)
    if pid is None and summary.processes:
        pid = summary.processes[0].pid  # the process with most unfreed bytes
    comm = parser.target_comm or next((p.comm for p in summary.processes if p.pid == pid), _comm(name))
    start = summary.start_time if summary.start_time is not None else summary.end_time
    return build_result(
        summary,
        stats,
        target=Target(pid=pid or 0, comm=comm, cmdline=()),
        backend=_backend(kind, name),
        # where the capture was made: a trace saved by leakhunt says; a pasted log does not
        run=run_info(
            parser.started_at or started_at,
            summary.end_time - start,
            "interrupted" if stop.asked else "imported",
            host=parser.host if parser.host not in (None, "-") else "",
            kernel=parser.kernel if parser.kernel not in (None, "-") else "",
        ),
        notes=notes,
        # a memleak log saved by `leakhunt trace` names its target: other processes' lines are
        # left out as the live run did; a pasted log, or bpftrace's (filtered in the kernel, with
        # the target's children), keeps every process
        only_pid=parser.target_pid if kind == "memleak-trace" else None,
    )


class _Reading:
    """The log's pieces, ending where a stop (Ctrl-C, SIGTERM) came: during a read the signal
    ends the log there (``interrupt.sigterm_as_interrupt`` raises only then: a pipe's writer may
    never write again); while a block or snapshot is matched, it finishes and no piece is read
    after it. What was read is matched and reported (status 130; a few blocks, a tenth of a
    second)."""

    def __init__(self) -> None:
        self.now = False  # in a read: a stop may interrupt it

    def pieces(self, pieces: Iterable[T], stop: Interruption) -> Iterator[T]:
        it = iter(pieces)
        while True:
            try:
                self.now = True
                if stop.asked:
                    return
                piece = next(it)
            except (StopIteration, KeyboardInterrupt):  # (KeyboardInterrupt: only in a read)
                return
            finally:
                self.now = False
            yield piece


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of giving it back to the kernel at once.

    Each block of a trace log takes the same large numpy temporaries (a few MiB); by default glibc
    maps blocks that large anew every time and unmaps them when freed, so every page is faulted in
    (and zeroed) again: ~185,000 page faults for the 2M-line bench log, ~20,000 with these
    settings, and a few tenths of a second of system time less. Not glibc: nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)


def _pid_from_notes(notes: Iterable[str]) -> int | None:
    for note in notes:
        for pattern in _PID_NOTES:
            m = pattern.search(note)
            if m is not None:
                return int(m.group(1))
    return None


def _comm(name: str) -> str:
    return "stdin" if name == "-" else Path(name).stem or "import"


def _interval(snapshots: tuple[Snapshot, ...]) -> float:
    steps = sorted(b.t - a.t for a, b in itertools.pairwise(snapshots) if b.t > a.t)
    return steps[len(steps) // 2] if steps else 0.0
