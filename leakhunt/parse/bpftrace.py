"""bpftrace output of leakhunt's probe protocol -> ``model.Snapshot``, one per interval.

The protocol (leakhunt's scripts print it; see contract 1): every interval prints
``time("%H:%M:%S\\n")``, then ``print(@bytes)`` (outstanding bytes per user stack) and
``print(@count)`` (outstanding allocations per the same stack). A ``time`` event starts a new
snapshot. Both of bpftrace's output forms are read, line by line, even mixed:

``-f json`` (one object per line; 0.23 escapes stack keys twice, so that once decoded they still
hold ``\\n\\t`` escapes (captured); since 0.24 map keys lose their spaces and big integers may be
strings)::

    {"type": "time", "data": "08:51:02\\n"}
    {"type": "map", "data": {"@bytes": {"\\n    leaky_alloc+15\\n    main+24\\n": 595968}}}
    {"type": "lost_events", "data": {"events": 3}}
    {"type": "printf", "data": "leakhunt: attached\\n"}

text::

    08:51:02
    @bytes[
        leaky_alloc+15
        main+24
    ]: 595968

Stack keys come in the default form (``leaky_alloc+15``, decimal offsets) or ``ustack(perf)``
(``7f52eed60930 leaky_alloc+15 (/tmp/leak)``). ``printf`` lines starting with ``leakhunt:`` are
status lines: they go to ``ParseStats.notes``. Other maps are ignored (noted once per name).

From 0.2x bpftrace reports each failed helper call at run time on stdout (captured on 0.23), in JSON
as ``{"type": "helper_error", "msg": "Map full; can't update element. ...", "helper":
"map_update_elem", "retcode": -7, ...}``, in text as a located warning with its context::

    /tmp/x.bt:5:3-30: WARNING: Map full; can't update element. Try increasing max_map_keys config
    Additional Info - helper: map_update_elem, retcode: -7
      @stk[retval] = ustack(perf); @sz[retval] = @size[tid];
      ~~~~~~~~~~~~~~~~~~~~~~~~~~~

A full map sets ``ParseStats.map_full`` (what the probe counted is incomplete) with one note that
counts the failed updates; other diagnostics become notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from leakhunt.model import Frame, Snapshot, Stack, StackSample
from leakhunt.parse import ParseStats, stream_snapshots
from leakhunt.parse.frames import cut_garbage, parse_bpftrace_frame

# leakhunt's investigate script prints gauges as one-value maps each interval (JSON or text): @live
# (blocks tracked now: the map fill), @allocs and @frees (calls counted since the script was armed)
_GAUGE_RE = re.compile(
    r'^(?:\{"type": ?"map", ?"data": ?\{"@(live|allocs|frees)": ?"?|@(live|allocs|frees): )(-?\d{1,19})'
)


def parse_gauge(line: str) -> tuple[str, int] | None:
    """``("live" | "allocs" | "frees", value)`` for a gauge line of the investigate script, else None.

    >>> parse_gauge('{"type": "map", "data": {"@allocs": 12}}')
    ('allocs', 12)
    """
    match = _GAUGE_RE.search(line)
    if match is None:
        return None
    return (match.group(1) or match.group(2), int(match.group(3)))


MAX_KEY_LINES = 512  # frames of one text-mode key; bpftrace's stacks stop at 127
DAY = 86400
BYTES_MAP = "@bytes"
COUNT_MAP = "@count"
# allocations per stack the probe could not track (its map of live blocks was full)
UNTRACKED_MAP = "@untracked"
STACK_MAPS = (BYTES_MAP, COUNT_MAP, UNTRACKED_MAP)
STATUS_PREFIX = "leakhunt:"
MAX_STATUS_NOTES = 200

_TIME = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})")
_KEY_START = re.compile(r"(?P<name>@[\w.]*)\[")
_KEY_END = re.compile(r"\]: (?P<value>-?\d{1,25})")
_ONE_LINE_ENTRY = re.compile(r"(?P<name>@[\w.]*)(?:\[(?P<key>.*)\])?: ?(?P<value>.*)")
_DIGITS = re.compile(r"\d+")
_LOST = re.compile(r"Lost (?P<n>\d{1,20}) events")
_ATTACHING = re.compile(r"Attach(?:ing|ed) \d+ probes?\.*")
# text mode diagnostics: "[FILE:LINE:COL[-COL]: ]WARNING: msg", then (located ones, 0.2x) the
# helper's name and return code, the script's source line and a line of carets under the spot
_DIAGNOSTIC = re.compile(r"(?P<loc>\S+:\d+:\d+(?:-\d+)?: )?(?:ERROR|WARNING): .*")
_ADDITIONAL_INFO = re.compile(r"Additional Info - helper: \w+, retcode: -?\d+")
_CARETS = re.compile(r"\s*~+\s*")
_MAP_FULL = re.compile(r"\bmap full\b", re.IGNORECASE)
MAP_FULL_NOTE = "bpftrace could not store"


_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t"}


def _unescape_key(key: str) -> str:
    """A stack key escaped twice (bpftrace 0.23 ``-f json``: ``"\\n\\tmain+5 (/bin/x)\\n"``) decoded
    once more; keys that already hold real line breaks are left as they are."""
    if "\n" in key or "\\n" not in key:
        return key
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), key)


def _to_int(value: object) -> int | None:
    """A map value: JSON number, or a string when bpftrace could not fit it in a double."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and 0 < len(value) <= 25:
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


@dataclass
class _Pending:
    clock: str | None
    t: float
    maps: dict[str, dict[str, int]] = field(default_factory=dict)


class BpftraceParser:
    """Streaming parser of bpftrace output (JSON or text). Memory: one interval's maps."""

    def __init__(self, stats: ParseStats | None = None) -> None:
        self.stats = stats if stats is not None else ParseStats()
        self._pending: _Pending | None = None
        self._first_clock: int | None = None
        self._last_clock: int | None = None
        self._day_offset = 0
        self._last_t: float | None = None
        self._step: float = 1.0
        self._stacks: dict[str, Stack] = {}  # key text -> parsed stack (keys repeat every interval)
        # text mode: a multi-line key being collected
        self._key_map: str | None = None
        self._key_lines: list[str] = []
        self._skip_values = False  # text mode: indented value lines of an ignored map entry
        # text mode: (map, last value) of the map print whose entries are arriving, None between prints
        self._block: tuple[str, int] | None = None
        # text mode: a located diagnostic was read; its source line (echoed next) is still to come
        self._echo_pending = False
        self._map_full_errors = 0  # failed map updates bpftrace reported ("Map full")

    # --- public API -------------------------------------------------------------------------

    def feed(self, line: str) -> Snapshot | None:
        """Consume one line; return the previous interval's Snapshot when this line starts a new one."""
        self.stats.lines += 1
        # No length limit: one JSON line holds a whole map (1,000 stacks of 25 frames are over 1 MiB),
        # and dropping it would drop the snapshot.
        line = line.rstrip("\r\n")
        if line.startswith("{"):
            return self._json_line(line)
        return self._text_line(line)

    def finish(self) -> Snapshot | None:
        """End of input: the last interval, if any."""
        if self._key_map is not None:
            self.stats.bad_line(f"{self._key_map}[ (output ended inside this key)")
            self._key_map = None
        return self._flush()

    # --- JSON -------------------------------------------------------------------------------

    def _json_line(self, line: str) -> Snapshot | None:
        try:
            event = json.loads(line, object_pairs_hook=self._json_object)
        except (ValueError, RecursionError):
            self.stats.bad_line(line)
            return None
        if not isinstance(event, dict):
            self.stats.bad_line(line)
            return None
        kind, data = event.get("type"), event.get("data")
        if kind == "time" and isinstance(data, str):
            return self._time(data.strip())
        if kind == "map" and isinstance(data, dict):
            done: Snapshot | None = None
            for name, value in data.items():
                if not isinstance(value, dict):
                    self._ignored_map(str(name))
                    continue
                entries: dict[str, int] = {}
                for raw_key, raw in value.items():
                    number = _to_int(raw)
                    if number is None:
                        continue
                    key = _unescape_key(str(raw_key))
                    if not key.strip():
                        self._empty_key(str(name))
                        key = ""
                    entries[key] = entries.get(key, 0) + number
                done = self._map(str(name), entries) or done
            return done
        if kind == "printf" and isinstance(data, str):
            for text in data.splitlines():
                self._printf(text)
            return None
        if kind == "lost_events":
            lost = _to_int(data.get("events")) if isinstance(data, dict) else None
            if lost is None:
                lost = _to_int(event.get("count"))
            self.stats.lost_events += max(lost or 0, 0)
            return None
        if kind == "attached_probes":
            probes = _to_int(data.get("probes")) if isinstance(data, dict) else None
            self.stats.note(f"bpftrace attached {probes} probes")
            return None
        if kind in ("errorf", "warnf", "helper_error", "runtime_error", "error", "warning"):
            # 0.23's helper_error carries its text in "msg" (no "data")
            msg = data if data is not None else event.get("msg")
            text = msg if isinstance(msg, str) else json.dumps(msg)
            if not self._map_full(text):
                self.stats.note(f"bpftrace {kind}: {text[:200]}")
            return None
        if isinstance(kind, str):
            self.stats.note(f"ignored bpftrace output of type {kind!r}")
            return None
        self.stats.bad_line(line)
        return None

    def _json_object(self, pairs: list[tuple[str, object]]) -> dict[str, object]:
        """A JSON object; repeated keys with numbers are summed.

        One map print holds each key once, but the key is the stack as *text*: different stack ids
        print the same text (empty keys when the lookup failed, see ``_empty_key``; unresolved
        frames of threads that exited), and each one is outstanding memory of its own.
        """
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                old, new = _to_int(out[key]), _to_int(value)
                if old is not None and new is not None:
                    out[key] = old + new
                    continue
            out[key] = value
        return out

    # --- text -------------------------------------------------------------------------------

    def _text_line(self, line: str) -> Snapshot | None:
        if self._key_map is not None:
            end = _KEY_END.fullmatch(line)
            if end is not None:
                name, key = self._key_map, "\n".join(self._key_lines) + "\n"
                self._key_map, self._key_lines = None, []
                return self._text_entry(name, key, int(end.group("value")))
            if len(self._key_lines) < MAX_KEY_LINES and line.startswith((" ", "\t")):
                self._key_lines.append(line)
                return None
            # not a key line: the key was cut off (interrupted output); drop it, read this line
            self.stats.bad_line(f"{self._key_map}[ (key not closed)")
            self._key_map, self._key_lines = None, []
        text = line.strip()
        if self._echo_pending:
            # the source line a located diagnostic quotes (after its "Additional Info" line)
            if _ADDITIONAL_INFO.fullmatch(text):
                return None
            self._echo_pending = False
            if not _TIME.fullmatch(text) and not _DIAGNOSTIC.fullmatch(text):
                return None
        if not text.startswith("@"):
            self._block = None  # a map print ends at anything that is not one of its entries
        if not text:
            self._skip_values = False
            return None
        if self._skip_values and line.startswith((" ", "\t")):
            return None
        self._skip_values = False
        if _TIME.fullmatch(text):
            return self._time(text)
        if text.startswith(STATUS_PREFIX):
            self._printf(text)
            return None
        start = _KEY_START.fullmatch(text)
        if start is not None:
            self._key_map, self._key_lines = start.group("name"), []
            return None
        entry = _ONE_LINE_ENTRY.fullmatch(text)
        if entry is not None:
            name = entry.group("name")
            if name in STACK_MAPS and entry.group("key") is not None:
                try:
                    value = int(entry.group("value"))
                except ValueError:
                    value = None
                if value is not None and len(entry.group("value")) <= 25:
                    return self._text_entry(name, entry.group("key"), value)
            self._ignored_map(name)
            self._block = None
            # a value printed over the next lines (a stack stored as a map value)
            self._skip_values = not entry.group("value")
            return None
        lost = _LOST.fullmatch(text)
        if lost is not None:
            self.stats.lost_events += int(lost.group("n"))
            return None
        if _ATTACHING.fullmatch(text):
            self.stats.note(text)
            return None
        diagnostic = _DIAGNOSTIC.fullmatch(text)
        if diagnostic is not None:
            self._echo_pending = diagnostic.group("loc") is not None
            if not self._map_full(text):
                self.stats.note(text[:300])
            return None
        if _ADDITIONAL_INFO.fullmatch(text) or _CARETS.fullmatch(text):
            return None
        self.stats.bad_line(line)
        return None

    def _text_entry(self, name: str, key: str, value: int) -> Snapshot | None:
        """One ``@map[key]: value`` of text output. Entries of one map arrive line by line."""
        done = None
        pending = self._pending
        if not key.strip():
            # bpftrace failed to look a stack id up and printed an empty key: sum all of them
            # under one "[no stack]" entry instead of mistaking them for a repeated print
            self._empty_key(name)
            entries = self._open().maps.setdefault(name, {})
            entries[""] = entries.get("", 0) + value
            return None
        block = self._block
        if pending is not None and name in pending.maps and key in pending.maps[name]:
            if block is not None and block[0] == name and value >= block[1]:
                # The same text again within one print of the map: another stack id whose frames
                # print alike (unresolved frames of threads that exited). bpftrace prints a map
                # sorted by value, so within one print values never decrease: add it up.
                pending.maps[name][key] += value
                self._block = (name, value)
                return None
            # the map was printed again (bpftrace prints every map at exit) without a time event
            done = self._flush()
        self._open().maps.setdefault(name, {})[key] = value
        self._block = (name, value)
        return done

    # --- shared -----------------------------------------------------------------------------

    def _map_full(self, text: str) -> bool:
        """Count a diagnostic that says a map is full (True), or leave it to the caller (False)."""
        if not _MAP_FULL.search(text):
            return False
        self.stats.map_full = True
        self._map_full_errors += 1
        note = (
            f"{MAP_FULL_NOTE} {self._map_full_errors:,} map updates (Map full): what it counted is "
            "incomplete; give it bigger maps (--map-keys, BPFTRACE_MAX_MAP_KEYS)"
        )
        notes = self.stats.notes
        for i, old in enumerate(notes):
            if old.startswith(MAP_FULL_NOTE):
                notes[i] = note
                return True
        self.stats.note(note)
        return True

    def _empty_key(self, name: str) -> None:
        if name in (BYTES_MAP, COUNT_MAP):
            self.stats.note(
                "bpftrace printed empty stack keys (its stack id lookups failed): those "
                "allocations are counted under [no stack]"
            )

    def _printf(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if text.startswith(STATUS_PREFIX):
            text = text[:300]
            # a status line that repeats with new numbers ("leakhunt: live 12") replaces its
            # previous version: the report wants the latest, not one note per interval
            shape = _DIGITS.sub("#", text)
            for i, old in enumerate(self.stats.notes):
                if old.startswith(STATUS_PREFIX) and _DIGITS.sub("#", old) == shape:
                    del self.stats.notes[i]
                    break
            if len(self.stats.notes) < MAX_STATUS_NOTES:
                self.stats.notes.append(text)
        else:
            self.stats.note("ignored printf output that is not leakhunt's")

    def _ignored_map(self, name: str) -> None:
        if name not in STACK_MAPS:
            self.stats.note(f"ignored bpftrace map {name}")

    def _map(self, name: str, entries: dict[str, int]) -> Snapshot | None:
        if name not in STACK_MAPS:
            self._ignored_map(name)
            return None
        done = None
        if self._pending is not None and name in self._pending.maps:
            done = self._flush()  # printed again without a time event (e.g. bpftrace's exit print)
        self._open().maps[name] = entries
        return done

    def _open(self) -> _Pending:
        """The snapshot being filled; one without a time event is placed one step after the last."""
        if self._pending is None:
            if self._last_t is None:
                t = 0.0
            else:
                t = self._last_t + self._step
                self.stats.note("maps printed without a time event: their time is estimated")
            self._pending = _Pending(None, t)
        return self._pending

    def _time(self, text: str) -> Snapshot | None:
        m = _TIME.fullmatch(text)
        if m is None:
            self.stats.bad_line(text)
            return None
        done = self._flush()
        seconds = int(m.group("h")) * 3600 + int(m.group("m")) * 60 + int(m.group("s"))
        if self._first_clock is None:
            self._first_clock = seconds
        elif self._last_clock is not None and seconds + self._day_offset < self._last_clock:
            self._day_offset += DAY  # past midnight: bpftrace's time() prints the time of day
        absolute = seconds + self._day_offset
        self._last_clock = absolute
        t = float(absolute - self._first_clock)
        if self._last_t is not None and t > self._last_t:
            self._step = t - self._last_t
        self._pending = _Pending(text, t)
        return done

    def _flush(self) -> Snapshot | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        self._last_t = pending.t
        sizes = pending.maps.get(BYTES_MAP, {})
        counts = pending.maps.get(COUNT_MAP, {})
        samples: dict[Stack, StackSample] = {}
        for key, size in sizes.items():
            count = counts.get(key)
            if size <= 0 and not count:
                continue  # everything from this stack was freed again
            stack = self._stack(key)
            sample = StackSample(stack, max(size, 0), None if count is None else max(count, 0))
            old = samples.get(stack)
            if old is not None:
                # two keys that differ only above a lost caller: one stack
                both = None if old.count is None or sample.count is None else old.count + sample.count
                sample = StackSample(stack, old.outstanding_bytes + sample.outstanding_bytes, both)
            samples[stack] = sample
        untracked: dict[Stack, int] = {}
        for key, n in pending.maps.get(UNTRACKED_MAP, {}).items():
            if n > 0:
                stack = self._stack(key)
                untracked[stack] = untracked.get(stack, 0) + n
        return Snapshot(
            t=pending.t,
            stacks=tuple(samples.values()),
            clock=pending.clock,
            untracked=tuple(untracked.items()),
        )

    def _stack(self, key: str) -> Stack:
        stack = self._stacks.get(key)
        if stack is None:
            frames: list[Frame] = []
            for part in key.split("\n"):
                frame = parse_bpftrace_frame(part)
                if frame is not None:
                    frames.append(frame)
            clean, garbage = cut_garbage(tuple(frames))
            if garbage is not None:
                self.stats.callers_lost(garbage)
            self.stats.check_end(clean)
            stack = Stack(clean)
            self.stats.unknown_frames += sum(1 for f in clean if f.is_unknown)
            if len(self._stacks) < 100_000:
                self._stacks[key] = stack
        return stack


def parse_bpftrace(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[Snapshot]:
    """Snapshots from bpftrace output (JSON or text), streamed interval by interval."""
    return stream_snapshots(BpftraceParser(stats), lines)
