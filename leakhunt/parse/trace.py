"""Per-call allocator traces -> ``model.TraceEvent``, one per allocation or free.

BCC memleak ``-t`` prints one Python tuple per trace_pipe line (task, thread id, cpu, flags,
timestamp in seconds, message); Python 2 builds print no ``b''``; lines BCC could not split come
out as ``('Unknown', 0, 0, 'Unknown', 0.0, 'Unknown')``, and since the trace pipe is global,
other processes' and other tools' lines interleave::

    (b'top', 11748, 8, b'...11', 3393.638436, b'alloc entered, size = 7')
    (b'top', 11748, 8, b'...11', 3393.638438, b'alloc exited, size = 7, result = 56140ebca620')
    (b'top', 11748, 8, b'...11', 3393.638444, b'free entered, address = 56140ebc92b0, size = 7')

memleak's realloc probe prints the free of the old block, then the new allocation, so realloc is a
free plus an allocation here too. leakhunt's own bpftrace trace script (templates/probe/trace.bt.j2)
prints one event per line, timestamps in nanoseconds, with the process id as well::

    A 3393638438112 11748 11750 56140ebca620 7 top      (alloc: ns pid tid address size comm)
    F 3393638444000 11748 11748 56140ebc92b0 top        (free:  ns pid tid address comm)

A line ``leakhunt: tid 11750 pid 11748`` (leakhunt writes these into saved raw output, because
memleak names threads only) tells which process a thread belongs to; ``leakhunt: target pid 11748
comm top``, ``leakhunt: started_at ISO-TIME`` and ``leakhunt: host HOST kernel RELEASE`` head a
saved trace, ``leakhunt: trace end SECONDS`` (the events' clock when tracing stopped, for ages) ends
it: see ``TraceParser.target_pid`` etc.

``TraceParser.feed_fields`` returns plain tuples for speed (the matcher consumes millions of
lines); ``feed`` and ``parse_trace`` return ``TraceEvent`` objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Literal

from leakhunt.model import TraceEvent, TraceFields
from leakhunt.parse import ParseStats

MAX_LINE = 4096
STATUS_PREFIX = "leakhunt:"


_THREAD_NOTE = re.compile(r"leakhunt: tid (?P<tid>\d{1,10}) pid (?P<pid>\d{1,10})")
_TARGET_NOTE = re.compile(r"leakhunt: target pid (?P<pid>\d{1,10})(?: comm (?P<comm>.*))?")
_STARTED_NOTE = re.compile(r"leakhunt: started_at (?P<at>\S{1,40})")
_HOST_NOTE = re.compile(r"leakhunt: host (?P<host>\S{1,255}) kernel (?P<kernel>\S{1,255})")
_END_NOTE = re.compile(r"leakhunt: trace end (?P<t>\d{1,12}(?:\.\d{1,9})?)")
# the bpftrace trace script's own status lines: expected, nothing to report
_QUIET = re.compile(r"leakhunt: (tracing pid \d+|trace ended)|Attaching \d+ probes?\.*")
_BT_ALLOC = re.compile(
    r"A (?P<ns>\d{1,20}) (?P<pid>\d{1,10}) (?P<tid>\d{1,10}) (?P<addr>[0-9a-fA-F]{1,16}) "
    r"(?P<size>\d{1,20}) ?(?P<comm>.*)"
)
_BT_FREE = re.compile(
    r"F (?P<ns>\d{1,20}) (?P<pid>\d{1,10}) (?P<tid>\d{1,10}) (?P<addr>[0-9a-fA-F]{1,16}) ?(?P<comm>.*)"
)
_ATTACHING = re.compile(r"Attaching to pid \d+, Ctrl\+C to quit\.|Attaching \d+ probes?\.*")
_LOST = re.compile(r"Lost (?P<n>\d{1,20}) events")
_MAX_DIGITS = 20


def _unquote(text: str) -> str:
    """``b'top'`` / ``'top'`` / ``b"it's"`` -> the text (escapes kept as printed)."""
    if text[:1] == "b":
        text = text[1:]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


class TraceParser:
    """Streaming parser of per-call trace lines. Holds nothing but the thread -> process table."""

    def __init__(self, stats: ParseStats | None = None) -> None:
        self.stats = stats if stats is not None else ParseStats()
        self.tid_pid: dict[int, int] = {}
        self.foreign = 0  # well-formed trace lines of other tools (other bpf_trace_printk users)
        self.unknown_tuples = 0
        self.failed_allocs = 0
        self.target_pid: int | None = None  # from a saved trace's header lines
        self.target_comm: str | None = None
        self.started_at: str | None = None
        self.host: str | None = None  # where a saved trace was captured
        self.kernel: str | None = None
        self.end_time: float | None = None  # when a saved live trace stopped (the events' clock)
        self.memleak_lines = False  # memleak -t tuples were seen
        self.bpftrace_lines = False  # leakhunt bpftrace trace lines were seen
        self._comms: dict[str, str] = {}  # task field as printed -> comm
        self._in_traceback = False

    def feed(self, line: str) -> TraceEvent | None:
        """One line -> a TraceEvent, or None (not an event: status, foreign, unparsable)."""
        fields = self.feed_fields(line)
        if fields is None:
            return None
        kind, t, pid, tid, comm, address, size, _ = fields
        return TraceEvent(t, pid, tid, comm, "alloc" if kind == "alloc" else "free", address, size)

    def feed_fields(self, line: str) -> TraceFields | None:
        """Like ``feed`` but returns a plain tuple (see ``TraceFields``)."""
        self.stats.lines += 1
        line = line.rstrip("\r\n")
        if line[:2] in ("(b", "('", '("') and line[-1:] == ")":
            fields = self._tuple(line)
            if fields is not False:
                return fields
        elif line[:2] in ("A ", "F "):
            return self._bpftrace_event(line)
        self._other(line)
        return None

    # --- memleak -t tuples --------------------------------------------------------------------

    def _tuple(self, line: str) -> TraceFields | Literal[False] | None:
        """A memleak -t tuple's event, None for a tuple that is no event, False for no tuple.

        The hot path of `import` and `trace`: string methods only, no regex, cheapest lines first.
        """
        if len(line) > MAX_LINE:
            return False
        quote = line[-2]
        if quote == "'":
            start, skip = line.rfind(", b'"), 4
            if start < 0:
                start, skip = line.rfind(", '"), 3
        elif quote == '"':
            start, skip = line.rfind(', b"'), 4
            if start < 0:
                start, skip = line.rfind(', "'), 3
        else:
            return False
        if start < 0:
            return False
        at = start + skip
        # a third of memleak's lines; the "alloc exited" line that follows carries size and address
        if line.startswith("alloc entered, size = ", at):
            self.memleak_lines = True
            return None
        parts = line[1:start].rsplit(", ", 4)
        if len(parts) != 5:
            return False
        task, tid_text, _cpu, _flags, ts_text = parts
        if len(tid_text) > _MAX_DIGITS or len(ts_text) > 40:
            return False
        if tid_text == "0" and _unquote(task) == "Unknown":
            self.unknown_tuples += 1
            self.stats.bad_line(line)
            self.stats.note("memleak printed ('Unknown', ...) for trace lines it could not split")
            return None
        try:
            tid = int(tid_text)
            t = float(ts_text)
        except ValueError:
            return False
        self.memleak_lines = True
        comm = self._comms.get(task)
        if comm is None:
            comm = _unquote(task)
            if len(self._comms) < 4096:
                self._comms[task] = comm
        mapped = self.tid_pid.get(tid)
        # memleak's messages (tools/memleak.py, bpf_trace_printk):
        #   "alloc entered, size = %u", "alloc exited, size = %lu, result = %lx",
        #   "free entered, address = %lx, size = %lu"
        if line.startswith("alloc exited, size = ", at):
            size_text, _, addr_text = line[at + 21 : -2].partition(", result = ")
            if not addr_text or len(addr_text) > 16 or len(size_text) > _MAX_DIGITS:
                self._foreign(line)
                return None
            try:
                size = int(size_text)
                address = int(addr_text, 16)
            except ValueError:
                self._foreign(line)
                return None
            if address == 0:
                self.failed_allocs += 1  # a failed allocation (NULL): nothing to free later
                return None
            if mapped is None:
                return ("alloc", t, tid, tid, comm, address, size, False)
            return ("alloc", t, mapped, tid, comm, address, size, True)
        if line.startswith("free entered, address = ", at):
            addr_text, _, size_text = line[at + 24 : -2].partition(", size = ")
            if len(addr_text) > 16 or len(size_text) > _MAX_DIGITS:
                self._foreign(line)
                return None
            try:
                address = int(addr_text, 16)
                free_size: int | None = int(size_text) if size_text else None
            except ValueError:
                self._foreign(line)
                return None
            if mapped is None:
                return ("free", t, tid, tid, comm, address, free_size, False)
            return ("free", t, mapped, tid, comm, address, free_size, True)
        self._foreign(line)
        return None

    def _foreign(self, line: str) -> None:
        self.foreign += 1
        self.stats.note("other tools' trace_pipe lines were interleaved and skipped")

    # --- leakhunt's bpftrace trace script -----------------------------------------------------

    def _bpftrace_event(self, line: str) -> TraceFields | None:
        m = _BT_ALLOC.fullmatch(line) if line[0] == "A" else _BT_FREE.fullmatch(line)
        if m is None:
            self._other(line)
            return None
        self.bpftrace_lines = True
        t = int(m.group("ns")) / 1e9
        pid, tid, address = int(m.group("pid")), int(m.group("tid")), int(m.group("addr"), 16)
        if line[0] == "A":
            return ("alloc", t, pid, tid, m.group("comm"), address, int(m.group("size")), True)
        return ("free", t, pid, tid, m.group("comm"), address, None, True)

    # --- everything else ----------------------------------------------------------------------

    def _other(self, line: str) -> None:
        text = line.strip()
        if self._in_traceback:
            if line.startswith((" ", "\t")) or not text or text.startswith("^"):
                return
            self._in_traceback = False
            if text.startswith("KeyboardInterrupt"):
                return  # memleak -t stopped with Ctrl-C: the normal end
            if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", text):
                self.stats.note(f"the tracer crashed: {text[:200]}")
                return
        if not text:
            return
        if text == "Traceback (most recent call last):":
            self._in_traceback = True
            return
        m = _THREAD_NOTE.fullmatch(text)
        if m is not None:
            self.tid_pid[int(m.group("tid"))] = int(m.group("pid"))
            return
        m = _TARGET_NOTE.fullmatch(text)
        if m is not None:
            self.target_pid = int(m.group("pid"))
            self.target_comm = m.group("comm")
            return
        m = _STARTED_NOTE.fullmatch(text)
        if m is not None:
            self.started_at = m.group("at")
            return
        m = _HOST_NOTE.fullmatch(text)
        if m is not None:
            self.host, self.kernel = m.group("host"), m.group("kernel")
            return
        m = _END_NOTE.fullmatch(text)
        if m is not None:
            self.end_time = float(m.group("t"))
            return
        if _QUIET.fullmatch(text):
            return
        if text.startswith(STATUS_PREFIX):
            self.stats.note(text[:300])
            return
        if _ATTACHING.fullmatch(text):
            self.stats.note(text)
            return
        lost = _LOST.fullmatch(text)
        if lost is not None:
            self.stats.lost_events += int(lost.group("n"))
            return
        if text.startswith(("ERROR:", "WARNING:")):
            self.stats.note(text[:300])
            return
        self.stats.bad_line(line)


def parse_trace(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[TraceEvent]:
    """TraceEvents from memleak -t output or leakhunt's bpftrace trace output, streamed."""
    parser = TraceParser(stats)
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
