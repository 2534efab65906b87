"""JSON form of leakhunt's documents: the only code that turns model objects into JSON and back.

Every document is one JSON object with ``schema_version`` (``model.SCHEMA_VERSION``) and ``kind``
(``investigation``, ``scan`` or ``trace``); leakhunt/report/SCHEMA.md documents every field.
A short investigation looks like::

    {"schema_version": 1, "kind": "investigation",
     "target": {"pid": 4242, "comm": "leaky", "cmdline": ["./leaky"], ...},
     "backend": {"name": "bpftrace", "tool": "/usr/bin/bpftrace", "version": "v0.17.0", ...},
     "stacks": [{"id": 0, "frames": ["leaky_alloc+0x12 [leaky]", "main+0x21 [leaky]"],
                 "frame_fields": [{"symbol": "leaky_alloc", "offset": 18, "module": "leaky", ...}]}],
     "snapshots": [{"t": 0.0, "clock": "08:46:22", "stacks": [{"stack_id": 0, "outstanding_bytes": 1024}]}],
     "findings": [{"rank": 1, "verdict": "leak", "frames": [...], "outstanding_bytes": 16384,
                   "growth_bytes_per_sec": 3276.8, ...}], ...}

Stacks are stored once in ``stacks`` and referred to by ``stack_id`` from snapshots and findings, so a
long run does not repeat every frame in every snapshot; findings also carry their ``frames`` as text
for readers who only want the verdicts. Addresses are hex strings ("0x7f52eed60930"): kernel addresses
do not fit the 53-bit integers that JavaScript and many JSON readers use.

``load(dump(doc)) == doc`` for every document. ``load`` validates as it reads and raises
``ReportError`` naming the JSON path of the first bad value, never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import IO, TypeVar, cast, get_args

from leakhunt.errors import ReportError
from leakhunt.inputfile import read_document
from leakhunt.model import (
    ALLOCATOR_ROLES,
    SCHEMA_VERSION,
    AllocatorHook,
    AllocatorInfo,
    BackendInfo,
    BackendName,
    DataQuality,
    Finding,
    Frame,
    Investigation,
    KernelTrend,
    MemSample,
    ProcessKey,
    ProcessTrend,
    RunInfo,
    ScanResult,
    ScanVerdict,
    SeriesPoint,
    SlabTrend,
    Snapshot,
    SourceSnippet,
    Stack,
    StackSample,
    Target,
    TraceProcess,
    TraceResult,
    TrendEvidence,
    Unfreed,
    Verdict,
)
from leakhunt.report.safetext import escape_json_text

Document = Investigation | ScanResult | TraceResult

KINDS: dict[type[object], str] = {Investigation: "investigation", ScanResult: "scan", TraceResult: "trace"}

_T = TypeVar("_T")

JSONValue = object  # what json.loads returns; narrowed by the readers below


def kind_of(doc: Document) -> str:
    """``investigation``, ``scan`` or ``trace``."""
    return KINDS[type(doc)]


# --- writing ------------------------------------------------------------------------------------


def _num(value: float) -> float | None:
    # JSON has no NaN/Infinity; a reader gets null and load() turns it back into NaN.
    return value if math.isfinite(value) else None


def _nums(values: list[float]) -> list[float | None]:
    """``_num`` of each value (a long series: one check for the usual all-finite case)."""
    if math.isfinite(sum(values)):  # an infinity or NaN anywhere makes the sum one
        out: list[float | None] = list(values)
        return out
    return [_num(v) for v in values]


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _source(src: SourceSnippet) -> dict[str, object]:
    return {
        "file": src.file,
        "line": src.line,
        "first_line": src.first_line,
        "lines": list(src.lines),
        "error": src.error,
    }


def _read_source(o: _Obj) -> SourceSnippet:
    return SourceSnippet(
        file=o.get_str("file"),
        line=o.get_int("line"),
        first_line=o.get_int("first_line", 0),
        lines=o.strs("lines", []),
        error=o.get_str("error", ""),
    )


def _frame(frame: Frame) -> dict[str, object]:
    out: dict[str, object] = {
        "symbol": frame.symbol,
        "offset": frame.offset,
        "module": frame.module,
        "address": _hex(frame.address),
    }
    # optional (schema v1 readers ignore them): only written when known
    if frame.file is not None:
        out["file"] = frame.file
    if frame.line is not None:
        out["line"] = frame.line
    if frame.inlined:
        out["inlined"] = True
    return out


class _StackTable:
    """Numbers each distinct stack once, in order of first use."""

    def __init__(self) -> None:
        self.ids: dict[Stack, int] = {}

    def id(self, stack: Stack) -> int:
        return self.ids.setdefault(stack, len(self.ids))

    def ids_of(self, stacks: Iterable[Stack]) -> list[int]:
        """``id`` of each stack (the loop of a long run's snapshots: one lookup a stack)."""
        ids = self.ids
        out = []
        for stack in stacks:
            sid = ids.get(stack)
            if sid is None:
                sid = ids[stack] = len(ids)
            out.append(sid)
        return out

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "id": sid,
                "frames": [f.display() for f in stack.frames],
                "frame_fields": [_frame(f) for f in stack.frames],
            }
            for stack, sid in self.ids.items()
        ]


def _target(t: Target) -> dict[str, object]:
    return {
        "pid": t.pid,
        "comm": t.comm,
        "cmdline": list(t.cmdline),
        "exe": t.exe,
        "launched": t.launched,
        "exit_code": t.exit_code,
        "exited_early": t.exited_early,
    }


def _backend(b: BackendInfo) -> dict[str, object]:
    return {"name": b.name, "tool": b.tool, "version": b.version, "argv": list(b.argv), "reason": b.reason}


def _quality(q: DataQuality) -> dict[str, object]:
    out: dict[str, object] = {
        "lost_events": q.lost_events,
        "unparsed_lines": q.unparsed_lines,
        "unparsed_examples": list(q.unparsed_examples),
        "dropped_stacks": q.dropped_stacks,
        "map_full": q.map_full,
        "truncated_stacks": q.truncated_stacks,
        "unknown_frames": q.unknown_frames,
        "sample_rate": q.sample_rate,
        "notes": list(q.notes),
    }
    # optional (schema v1): absent when the backend cannot count them
    if q.allocations_seen is not None:
        out["allocations_seen"] = q.allocations_seen
    if q.frees_seen is not None:
        out["frees_seen"] = q.frees_seen
    # optional: written only when set, so reports without it stay as they were
    if q.missed_allocations:
        out["missed_allocations"] = q.missed_allocations
    return out


def _mem_columns(samples: Sequence[MemSample]) -> dict[str, object]:
    """Memory samples as parallel arrays (schema v2); ``anon`` is derived, for readers only."""
    return {
        "t": [_num(m.t) for m in samples],
        "rss": [m.rss for m in samples],
        "vms": [m.vms for m in samples],
        "shared": [m.shared for m in samples],
        "swap": [m.swap for m in samples],
        "anon": [m.anon for m in samples],
    }


def _snapshot(s: Snapshot, table: _StackTable) -> dict[str, object]:
    """One snapshot, its stacks as parallel arrays (schema v2)."""
    out: dict[str, object] = {
        "t": _num(s.t),
        "clock": s.clock,
        "truncated": s.truncated,
        "top_n": s.top_n,
        "addresses": [[_hex(a), size] for a, size in s.addresses],
        "stack_ids": table.ids_of([ss.stack for ss in s.stacks]),
        "outstanding_bytes": [ss.outstanding_bytes for ss in s.stacks],
        "counts": [ss.count for ss in s.stacks],
    }
    with_addresses = [
        [i, [[_hex(a), size] for a, size in ss.addresses]] for i, ss in enumerate(s.stacks) if ss.addresses
    ]
    if with_addresses:
        out["stack_addresses"] = with_addresses
    if s.untracked:
        out["untracked"] = [[table.id(st), n] for st, n in s.untracked]
    return out


def _allocator(a: AllocatorInfo | None) -> dict[str, object] | None:
    if a is None:
        return None
    return {
        "name": a.name,
        "version": a.version,
        "path": a.path,
        "prefix": a.prefix,
        "how": a.how,
        "hooks": [[h.symbol, h.role] for h in a.hooks],
    }


def _investigation(inv: Investigation) -> dict[str, object]:
    table = _StackTable()
    # Findings first, so that stack ids follow the ranking (id 0 is the top finding's stack).
    findings = [
        {
            "rank": f.rank,
            "verdict": f.verdict,
            "stack_id": table.id(f.stack),
            "frames": [fr.display() for fr in f.stack.frames],
            "outstanding_bytes": f.outstanding_bytes,
            "count": f.count,
            "growth_bytes_per_sec": _num(f.growth_bytes_per_sec),
            "confidence": _num(f.confidence),
            "first_seen": _num(f.first_seen),
            "last_seen": _num(f.last_seen),
            "reason": f.reason,
            # schema v2: the series as parallel arrays (v1 had one object per point)
            "series": {
                "t": _nums([p.t for p in f.series]),
                "outstanding_bytes": [p.outstanding_bytes for p in f.series],
                "count": [p.count for p in f.series],
            },
            **({"source": _source(f.source)} if f.source is not None else {}),
        }
        for f in inv.findings
    ]
    snapshots = [_snapshot(s, table) for s in inv.snapshots]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "investigation",
        "target": _target(inv.target),
        "backend": _backend(inv.backend),
        "started_at": inv.run.started_at,
        "duration_s": _num(inv.run.duration_s),
        "interval_s": _num(inv.interval_s),
        "stop_reason": inv.run.stop_reason,
        "kernel": inv.run.kernel,
        "host": inv.run.host,
        "leakhunt_version": inv.run.leakhunt_version,
        "options": [[k, v] for k, v in inv.options],
        **({"allocator": _allocator(inv.allocator)} if inv.allocator is not None else {}),
        "quality": _quality(inv.quality),
        "memory": _mem_columns(inv.memory),
        "findings": findings,
        "snapshots": snapshots,
        "stacks": table.to_json(),
    }


def _scan(scan: ScanResult) -> dict[str, object]:
    def evidence(e: TrendEvidence) -> dict[str, object]:
        return {
            "slope_bytes_per_sec": _num(e.slope_bytes_per_sec),
            "slope_rss_bytes_per_sec": _num(e.slope_rss_bytes_per_sec),
            "slope_vms_bytes_per_sec": _num(e.slope_vms_bytes_per_sec),
            "trend_z": _num(e.trend_z),
            "r2": _num(e.r2),
            "growth_bytes": e.growth_bytes,
            "late_slope_ratio": _num(e.late_slope_ratio),
            "drops": e.drops,
            "address_space_growth": e.address_space_growth,
            "note": e.note,
        }

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "scan",
        "started_at": scan.run.started_at,
        "duration_s": _num(scan.run.duration_s),
        "interval_s": _num(scan.interval_s),
        "host": scan.run.host,
        "kernel": scan.run.kernel,
        "leakhunt_version": scan.run.leakhunt_version,
        "sampled": scan.sampled,
        "unreadable": scan.unreadable,
        "unreadable_reasons": [[r, n] for r, n in scan.unreadable_reasons],
        "processes": [
            {
                "pid": p.key.pid,
                "create_time": _num(p.key.create_time),
                "name": p.name,
                "cmdline": list(p.cmdline),
                "username": p.username,
                "verdict": p.verdict,
                "evidence": evidence(p.evidence),
                "samples": _mem_columns(p.samples),
            }
            for p in scan.processes
        ],
        "investigations": [_investigation(i) for i in scan.investigations],
        "stop_reason": scan.run.stop_reason,
        "planned_duration_s": None if scan.planned_duration_s is None else _num(scan.planned_duration_s),
        "kernel_memory": None if scan.kernel_memory is None else _kernel_memory(scan.kernel_memory, evidence),
    }


def _kernel_memory(
    k: KernelTrend, evidence: Callable[[TrendEvidence], dict[str, object]]
) -> dict[str, object]:
    return {
        "signal": "SUnreclaim",
        "verdict": k.verdict,
        "evidence": evidence(k.evidence),
        "samples": _mem_columns(k.samples),
        "caches": [
            {
                "name": c.name,
                "first_bytes": c.first_bytes,
                "last_bytes": c.last_bytes,
                "slope_bytes_per_sec": _num(c.slope_bytes_per_sec),
            }
            for c in k.caches
        ],
        "note": k.note,
    }


def _trace(tr: TraceResult, *, blocks: bool = True) -> dict[str, object]:
    """``blocks``: False leaves each process's ``unfreed`` list empty (``dumps`` writes it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "trace",
        "target": _target(tr.target),
        "backend": _backend(tr.backend),
        "started_at": tr.run.started_at,
        "duration_s": _num(tr.run.duration_s),
        "end_time": _num(tr.end_time),
        "stop_reason": tr.run.stop_reason,
        "kernel": tr.run.kernel,
        "host": tr.run.host,
        "leakhunt_version": tr.run.leakhunt_version,
        **({"allocator": _allocator(tr.allocator)} if tr.allocator is not None else {}),
        "quality": _quality(tr.quality),
        "rate": [{"t": _num(t), "allocs": n, "bytes": b} for t, n, b in tr.rate],
        "processes": [
            {
                "pid": p.pid,
                "comm": p.comm,
                "alloc_count": p.alloc_count,
                "free_count": p.free_count,
                "unknown_frees": p.unknown_frees,
                "unfreed_count": p.unfreed_count,
                "unfreed_bytes": p.unfreed_bytes,
                "unfreed": [  # (_hex and _num inlined: one block per allocation never freed)
                    {
                        "address": f"{u.address:#x}",
                        "size": u.size,
                        "tid": u.tid,
                        "time": u.time if math.isfinite(u.time) else None,
                    }
                    for u in (p.unfreed if blocks else ())
                ],
            }
            for p in tr.processes
        ],
    }


def to_dict(doc: Document) -> dict[str, object]:
    """The JSON object of a document (plain dicts, lists, str, int, float, bool, None)."""
    if isinstance(doc, Investigation):
        return _investigation(doc)
    if isinstance(doc, ScanResult):
        return _scan(doc)
    if isinstance(doc, TraceResult):
        return _trace(doc)
    raise TypeError(f"not a leakhunt document: {type(doc).__name__}")


def dumps(doc: Document) -> str:
    """The document as JSON text (UTF-8, ends with a newline).

    One line per top-level field, and one line per item of the long lists (findings, snapshots,
    stacks, processes): readable with a pager or grep, and written by json's C encoder (an indented
    dump goes through the pure-Python one, many times slower on an hour-long run).
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": ")).encode
    fields = []
    # (a trace's unfreed blocks, tens of thousands after an import, are written by _with_unfreed)
    data = _trace(doc, blocks=False) if isinstance(doc, TraceResult) else to_dict(doc)
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if isinstance(doc, TraceResult) and key == "processes":
                encoded = (
                    _with_unfreed(encode(v), p.unfreed) for v, p in zip(value, doc.processes, strict=True)
                )
            else:
                encoded = (encode(v) for v in value)
            items = ",\n  ".join(encoded)
            fields.append(f"{encode(key)}: [\n  {items}\n ]")
        else:
            fields.append(f"{encode(key)}: {encode(value)}")
    text = "{\n " + ",\n ".join(fields) + "\n}"
    # C1 controls and bidi overrides as \uNNNN: the same JSON, harmless when shown on a terminal
    return escape_json_text(text) + "\n"


_NO_BLOCKS = '"unfreed": []}'


def _with_unfreed(process: str, unfreed: Sequence[Unfreed]) -> str:
    """A trace process's JSON (``_trace(blocks=False)``) with its unfreed blocks written in: what
    the encoder writes for them, formatted directly (tens of thousands of blocks after an import:
    a dict and an encoder call per block took twice as long)."""
    assert process.endswith(_NO_BLOCKS)
    blocks = ", ".join(map(_BLOCK.__mod__, map(_BLOCK_FIELDS, unfreed)))
    if "inf" in blocks or "nan" in blocks:  # (no key, hex address or finite number holds either)
        blocks = ", ".join(
            _BLOCK_NULL_TIME % (u.address, u.size, u.tid, repr(u.time) if math.isfinite(u.time) else "null")
            for u in unfreed
        )
    return f'{process[: -len(_NO_BLOCKS)]}"unfreed": [{blocks}]}}'


# one unfreed block as the encoder writes its dict; a time not finite is written null
_BLOCK = '{"address": "%#x", "size": %d, "tid": %d, "time": %r}'
_BLOCK_NULL_TIME = _BLOCK.replace("%r", "%s")
_BLOCK_FIELDS = attrgetter("address", "size", "tid", "time")


def dump(doc: Document, stream: IO[str]) -> None:
    """Write the document as JSON to a text stream."""
    stream.write(dumps(doc))


# --- reading ------------------------------------------------------------------------------------


_MISSING = object()


class _Obj:
    """A JSON object being read, with its path for error messages ("$.findings[2].verdict")."""

    def __init__(self, value: JSONValue, path: str) -> None:
        if not isinstance(value, dict):
            raise _bad(path, "an object", value)
        self.data = cast(dict[str, JSONValue], value)
        self.path = path

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}"

    def raw(self, key: str, default: JSONValue = _MISSING) -> JSONValue:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ReportError(
                f"{self.sub(key)}: missing",
                hint="the file is not a complete leakhunt report (see leakhunt/report/SCHEMA.md)",
            )
        return default

    def obj(self, key: str, default: JSONValue = _MISSING) -> _Obj:
        return _Obj(self.raw(key, default), self.sub(key))

    def get_int(self, key: str, default: JSONValue = _MISSING) -> int:
        return _as_int(self.raw(key, default), self.sub(key))

    def opt_int(self, key: str) -> int | None:
        value = self.raw(key, None)
        return None if value is None else _as_int(value, self.sub(key))

    def get_float(self, key: str, default: JSONValue = _MISSING) -> float:
        return _as_float(self.raw(key, default), self.sub(key))

    def opt_float(self, key: str) -> float | None:
        value = self.raw(key, None)
        return None if value is None else _as_float(value, self.sub(key))

    def get_str(self, key: str, default: JSONValue = _MISSING) -> str:
        return _as_str(self.raw(key, default), self.sub(key))

    def opt_str(self, key: str) -> str | None:
        value = self.raw(key, None)
        return None if value is None else _as_str(value, self.sub(key))

    def get_bool(self, key: str, default: JSONValue = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise _bad(self.sub(key), "true or false", value)
        return value

    def opt_hex(self, key: str) -> int | None:
        value = self.raw(key, None)
        return None if value is None else _as_hex(value, self.sub(key))

    def get_list(self, key: str, default: JSONValue = _MISSING) -> list[JSONValue]:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise _bad(self.sub(key), "a list", value)
        return cast(list[JSONValue], value)

    def objs(self, key: str, default: JSONValue = _MISSING) -> Iterator[_Obj]:
        for i, item in enumerate(self.get_list(key, default)):
            yield _Obj(item, f"{self.sub(key)}[{i}]")

    def strs(self, key: str, default: JSONValue = _MISSING) -> tuple[str, ...]:
        return tuple(
            _as_str(item, f"{self.sub(key)}[{i}]") for i, item in enumerate(self.get_list(key, default))
        )

    def literal(self, key: str, choices: Sequence[_T], default: JSONValue = _MISSING) -> _T:
        value = self.raw(key, default)
        if value not in choices:
            wanted = " | ".join(repr(c) for c in choices)
            raise _bad(self.sub(key), f"one of {wanted}", value)
        return cast(_T, value)

    def pairs(self, key: str, second: Callable[[JSONValue, str], _T]) -> tuple[tuple[str, _T], ...]:
        out: list[tuple[str, _T]] = []
        for i, item in enumerate(self.get_list(key, [])):
            path = f"{self.sub(key)}[{i}]"
            if not (isinstance(item, list) and len(item) == 2):
                raise _bad(path, "a [name, value] pair", item)
            out.append((_as_str(item[0], path + "[0]"), second(item[1], path + "[1]")))
        return tuple(out)


def _describe(value: JSONValue) -> str:
    text = json.dumps(value)[:60] if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text


def _bad(path: str, wanted: str, value: JSONValue) -> ReportError:
    return ReportError(
        f"{path}: expected {wanted}, found {_describe(value)}",
        hint="the file is not a valid leakhunt report (see leakhunt/report/SCHEMA.md)",
    )


def _as_int(value: JSONValue, path: str) -> int:
    if isinstance(value, bool):
        raise _bad(path, "an integer", value)
    if isinstance(value, int):
        number = value
    # Big integers written as strings by other tools (bpftrace 0.2x does that) are accepted too.
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.lstrip("-").isdigit() and len(value) <= 20
    ):
        number = int(value)
    else:
        raise _bad(path, "an integer", value)
    if not _INT_MIN <= number <= _INT_MAX:
        raise _bad(path, "an integer within 64 bits", value)
    return number


def _as_float(value: JSONValue, path: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(path, "a number", value)
    return float(value)


def _as_str(value: JSONValue, path: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, "a string", value)
    return value


def _as_hex(value: JSONValue, path: str) -> int:
    if isinstance(value, str):
        try:
            address = int(value, 16) if len(value) <= 18 else -1
        except ValueError:
            address = -1
        if not 0 <= address <= _ADDR_MAX:
            raise _bad(path, "a hex address like 0x7f00aa", value)
        return address
    return _as_int(value, path)


def _read_target(o: _Obj) -> Target:
    return Target(
        pid=o.get_int("pid"),
        comm=o.get_str("comm"),
        cmdline=o.strs("cmdline"),
        exe=o.opt_str("exe"),
        launched=o.get_bool("launched", False),
        exit_code=o.opt_int("exit_code"),
        exited_early=o.get_bool("exited_early", False),
    )


def _read_backend(o: _Obj) -> BackendInfo:
    return BackendInfo(
        name=o.literal("name", cast(tuple[BackendName, ...], get_args(BackendName))),
        tool=o.get_str("tool"),
        version=o.get_str("version"),
        argv=o.strs("argv", []),
        reason=o.get_str("reason", ""),
    )


def _read_quality(o: _Obj) -> DataQuality:
    return DataQuality(
        lost_events=o.get_int("lost_events", 0),
        unparsed_lines=o.get_int("unparsed_lines", 0),
        unparsed_examples=o.strs("unparsed_examples", []),
        dropped_stacks=o.get_int("dropped_stacks", 0),
        map_full=o.get_bool("map_full", False),
        truncated_stacks=o.get_int("truncated_stacks", 0),
        unknown_frames=o.get_int("unknown_frames", 0),
        sample_rate=o.get_int("sample_rate", 1),
        notes=o.strs("notes", []),
        allocations_seen=o.opt_int("allocations_seen"),
        frees_seen=o.opt_int("frees_seen"),
        missed_allocations=o.get_str("missed_allocations", ""),
    )


def _read_allocator(o: _Obj) -> AllocatorInfo | None:
    """The ``allocator`` object, or None when absent or null (files written before it, imports)."""
    if o.raw("allocator", None) is None:
        return None
    a = o.obj("allocator")
    hooks = []
    for i, item in enumerate(a.get_list("hooks", [])):
        path = f"{a.sub('hooks')}[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise _bad(path, "a [symbol, role] pair", item)
        role = _as_str(item[1], path + "[1]")
        if role not in ALLOCATOR_ROLES:
            raise _bad(path + "[1]", f"one of {', '.join(ALLOCATOR_ROLES)}", item[1])
        hooks.append(AllocatorHook(_as_str(item[0], path + "[0]"), role))
    return AllocatorInfo(
        name=a.get_str("name"),
        path=a.get_str("path"),
        version=a.opt_str("version"),
        prefix=a.get_str("prefix", ""),
        hooks=tuple(hooks),
        how=a.get_str("how", ""),
    )


def _read_mem(o: _Obj) -> MemSample:
    return MemSample(
        t=o.get_float("t"),
        rss=o.get_int("rss"),
        vms=o.get_int("vms"),
        shared=o.get_int("shared", 0),
        swap=o.opt_int("swap"),
    )


def _columns(o: _Obj, key: str, names: Sequence[str], required: Sequence[str]) -> list[dict[str, JSONValue]]:
    """Parallel arrays (schema v2) ``o[key] = {name: [...]}`` as one dict per index; a name not in
    ``required`` may be absent (then None). All arrays must be as long as each other."""
    cols = o.obj(key)
    arrays: dict[str, list[JSONValue]] = {}
    for name in names:
        if name in cols.data or name in required:
            arrays[name] = cols.get_list(name)
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise ReportError(f"{cols.path}: its arrays differ in length ({sorted(lengths)})")
    n = lengths.pop() if lengths else 0
    return [{name: arrays[name][i] if name in arrays else None for name in names} for i in range(n)]


def _read_mems(o: _Obj, key: str) -> tuple[MemSample, ...]:
    """Memory samples: parallel arrays (schema v2) or one object per sample (v1)."""
    raw = o.raw(key, [])
    if isinstance(raw, list):
        return tuple(_read_mem(m) for m in o.objs(key, []))
    rows = _columns(o, key, ("t", "rss", "vms", "shared", "swap"), ("t", "rss", "vms"))
    return tuple(
        _read_mem(
            _Obj({k: (0 if k == "shared" and v is None else v) for k, v in row.items()}, f"{o.sub(key)}[{i}]")
        )
        for i, row in enumerate(rows)
    )


def _read_frame(o: _Obj) -> Frame:
    return Frame(
        symbol=o.get_str("symbol"),
        offset=o.opt_int("offset"),
        module=o.opt_str("module"),
        address=o.opt_hex("address"),
        file=o.opt_str("file"),
        line=o.opt_int("line"),
        inlined=o.get_bool("inlined", False),
    )


def _read_run(o: _Obj) -> RunInfo:
    """The run header, flat at the top of every document."""
    return RunInfo(
        started_at=o.get_str("started_at"),
        duration_s=o.get_float("duration_s"),
        # documents written before stop_reason existed ran (as far as anyone can tell) their whole window
        stop_reason=o.get_str("stop_reason", "duration"),
        host=o.get_str("host", ""),
        kernel=o.get_str("kernel", ""),
        leakhunt_version=o.get_str("leakhunt_version", ""),
    )


def _read_investigation(o: _Obj) -> Investigation:
    stacks: dict[int, Stack] = {}
    for s in o.objs("stacks"):
        sid = s.get_int("id")
        if sid in stacks:
            raise ReportError(f"{s.sub('id')}: stack id {sid} appears twice")
        stacks[sid] = Stack(tuple(_read_frame(f) for f in s.objs("frame_fields")))

    def stack_of(obj: _Obj) -> Stack:
        sid = obj.get_int("stack_id")
        if sid not in stacks:
            raise ReportError(f"{obj.sub('stack_id')}: no stack with id {sid} in .stacks")
        return stacks[sid]

    def addresses(value: JSONValue, path: str) -> tuple[int, int]:
        if not (isinstance(value, list) and len(value) == 2):
            raise _bad(path, "an [address, size] pair", value)
        return (_as_hex(value[0], path + "[0]"), _as_int(value[1], path + "[1]"))

    def untracked(value: JSONValue, path: str) -> tuple[Stack, int]:
        if not (isinstance(value, list) and len(value) == 2):
            raise _bad(path, "a [stack_id, allocations] pair", value)
        sid = _as_int(value[0], path + "[0]")
        if sid not in stacks:
            raise ReportError(f"{path}[0]: no stack with id {sid} in .stacks")
        return (stacks[sid], _as_int(value[1], path + "[1]"))

    def snapshot_stacks(s: _Obj) -> tuple[StackSample, ...]:
        if "stack_ids" not in s.data:  # schema v1: one object per stack
            return tuple(
                StackSample(
                    stack=stack_of(ss),
                    outstanding_bytes=ss.get_int("outstanding_bytes"),
                    count=ss.opt_int("count"),
                    addresses=tuple(
                        addresses(a, f"{ss.sub('addresses')}[{i}]")
                        for i, a in enumerate(ss.get_list("addresses", []))
                    ),
                )
                for ss in s.objs("stacks")
            )
        ids, sizes, counts = s.get_list("stack_ids"), s.get_list("outstanding_bytes"), s.get_list("counts")
        if not len(ids) == len(sizes) == len(counts):
            raise ReportError(f"{s.path}: stack_ids, outstanding_bytes and counts differ in length")
        per_stack: dict[int, tuple[tuple[int, int], ...]] = {}
        for j, entry in enumerate(s.get_list("stack_addresses", [])):
            path = f"{s.sub('stack_addresses')}[{j}]"
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
                raise _bad(path, "an [index, [[address, size], ...]] pair", entry)
            per_stack[_as_int(entry[0], path + "[0]")] = tuple(
                addresses(a, f"{path}[1][{i}]") for i, a in enumerate(entry[1])
            )
        out = []
        for i, (sid, size, count) in enumerate(zip(ids, sizes, counts, strict=True)):
            out.append(
                StackSample(
                    stack=stack_of(_Obj({"stack_id": sid}, f"{s.sub('stack_ids')}[{i}]")),
                    outstanding_bytes=_as_int(size, f"{s.sub('outstanding_bytes')}[{i}]"),
                    count=None if count is None else _as_int(count, f"{s.sub('counts')}[{i}]"),
                    addresses=per_stack.get(i, ()),
                )
            )
        return tuple(out)

    def series(f: _Obj) -> tuple[SeriesPoint, ...]:
        if isinstance(f.raw("series", []), list):  # schema v1: one object per point
            return tuple(
                SeriesPoint(
                    t=p.get_float("t"),
                    outstanding_bytes=p.get_int("outstanding_bytes"),
                    count=p.opt_int("count"),
                )
                for p in f.objs("series", [])
            )
        rows = _columns(f, "series", ("t", "outstanding_bytes", "count"), ("t", "outstanding_bytes"))
        return tuple(
            SeriesPoint(
                t=_as_float(r["t"], f"{f.sub('series')}.t[{i}]"),
                outstanding_bytes=_as_int(
                    r["outstanding_bytes"], f"{f.sub('series')}.outstanding_bytes[{i}]"
                ),
                count=None if r["count"] is None else _as_int(r["count"], f"{f.sub('series')}.count[{i}]"),
            )
            for i, r in enumerate(rows)
        )

    snapshots = tuple(
        Snapshot(
            t=s.get_float("t"),
            clock=s.opt_str("clock"),
            truncated=s.get_bool("truncated", False),
            top_n=s.opt_int("top_n"),
            addresses=tuple(
                addresses(a, f"{s.sub('addresses')}[{i}]") for i, a in enumerate(s.get_list("addresses", []))
            ),
            stacks=snapshot_stacks(s),
            untracked=tuple(
                untracked(u, f"{s.sub('untracked')}[{i}]") for i, u in enumerate(s.get_list("untracked", []))
            ),
        )
        for s in o.objs("snapshots")
    )
    findings = tuple(
        Finding(
            rank=f.get_int("rank"),
            stack=stack_of(f),
            verdict=f.literal("verdict", cast(tuple[Verdict, ...], get_args(Verdict))),
            outstanding_bytes=f.get_int("outstanding_bytes"),
            count=f.opt_int("count"),
            growth_bytes_per_sec=f.get_float("growth_bytes_per_sec"),
            confidence=f.get_float("confidence"),
            first_seen=f.get_float("first_seen"),
            last_seen=f.get_float("last_seen"),
            reason=f.get_str("reason", ""),
            series=series(f),
            source=_read_source(f.obj("source")) if f.raw("source", None) is not None else None,
        )
        for f in o.objs("findings")
    )

    return Investigation(
        target=_read_target(o.obj("target")),
        backend=_read_backend(o.obj("backend")),
        run=_read_run(o),
        interval_s=o.get_float("interval_s"),
        snapshots=snapshots,
        findings=findings,
        memory=_read_mems(o, "memory"),
        quality=_read_quality(o.obj("quality", {})),
        options=o.pairs("options", _as_str),
        allocator=_read_allocator(o),
    )


def _read_scan(o: _Obj) -> ScanResult:
    def evidence(e: _Obj) -> TrendEvidence:
        return TrendEvidence(
            slope_bytes_per_sec=e.get_float("slope_bytes_per_sec"),
            slope_rss_bytes_per_sec=e.get_float("slope_rss_bytes_per_sec"),
            slope_vms_bytes_per_sec=e.get_float("slope_vms_bytes_per_sec"),
            trend_z=e.get_float("trend_z"),
            r2=e.get_float("r2"),
            growth_bytes=e.get_int("growth_bytes"),
            late_slope_ratio=e.get_float("late_slope_ratio"),
            drops=e.get_int("drops"),
            address_space_growth=e.get_bool("address_space_growth"),
            note=e.get_str("note", ""),
        )

    processes = tuple(
        ProcessTrend(
            key=ProcessKey(pid=p.get_int("pid"), create_time=p.get_float("create_time")),
            name=p.get_str("name"),
            cmdline=p.strs("cmdline"),
            username=p.opt_str("username"),
            verdict=p.literal("verdict", cast(tuple[ScanVerdict, ...], get_args(ScanVerdict))),
            evidence=evidence(p.obj("evidence")),
            samples=_read_mems(p, "samples"),
        )
        for p in o.objs("processes")
    )
    investigations = []
    for i, item in enumerate(o.get_list("investigations", [])):
        sub = _Obj(item, f"{o.sub('investigations')}[{i}]")
        investigations.append(_read_investigation(sub))
    return ScanResult(
        run=_read_run(o),
        interval_s=o.get_float("interval_s"),
        processes=processes,
        sampled=o.get_int("sampled"),
        unreadable=o.get_int("unreadable", 0),
        unreadable_reasons=o.pairs("unreadable_reasons", _as_int),
        investigations=tuple(investigations),
        planned_duration_s=o.opt_float("planned_duration_s"),
        kernel_memory=_read_kernel_memory(o, evidence),
    )


def _read_kernel_memory(o: _Obj, evidence: Callable[[_Obj], TrendEvidence]) -> KernelTrend | None:
    if o.raw("kernel_memory", None) is None:
        return None  # absent from scans written before it, null when /proc/meminfo said nothing
    k = o.obj("kernel_memory")
    return KernelTrend(
        verdict=k.literal("verdict", cast(tuple[ScanVerdict, ...], get_args(ScanVerdict))),
        evidence=evidence(k.obj("evidence")),
        samples=_read_mems(k, "samples"),
        caches=tuple(
            SlabTrend(
                name=c.get_str("name"),
                first_bytes=c.get_int("first_bytes"),
                last_bytes=c.get_int("last_bytes"),
                slope_bytes_per_sec=c.get_float("slope_bytes_per_sec"),
            )
            for c in k.objs("caches", [])
        ),
        note=k.get_str("note", ""),
    )


def _read_trace(o: _Obj) -> TraceResult:
    processes = tuple(
        TraceProcess(
            pid=p.get_int("pid"),
            comm=p.get_str("comm"),
            alloc_count=p.get_int("alloc_count"),
            free_count=p.get_int("free_count"),
            unknown_frees=p.get_int("unknown_frees", 0),
            unfreed=tuple(
                Unfreed(
                    address=_as_hex(u.raw("address"), u.sub("address")),
                    size=u.get_int("size"),
                    tid=u.get_int("tid"),
                    time=u.get_float("time"),
                )
                for u in p.objs("unfreed", [])
            ),
        )
        for p in o.objs("processes")
    )
    rate = tuple((r.get_float("t"), r.get_int("allocs"), r.get_int("bytes")) for r in o.objs("rate", []))
    return TraceResult(
        target=_read_target(o.obj("target")),
        backend=_read_backend(o.obj("backend")),
        run=_read_run(o),
        processes=processes,
        end_time=o.get_float("end_time"),
        rate=rate,
        quality=_read_quality(o.obj("quality", {})),
        allocator=_read_allocator(o),
    )


_READERS: Mapping[str, Callable[[_Obj], Document]] = {
    "investigation": _read_investigation,
    "scan": _read_scan,
    "trace": _read_trace,
}


def from_dict(data: JSONValue, *, source: str = "document") -> Document:
    """Rebuild a document from its JSON object; raises ReportError on anything unexpected."""
    root = _Obj(data, "$") if isinstance(data, dict) else None
    if root is None:
        raise ReportError(
            f"{source}: expected a JSON object, found {_describe(data)}",
            hint="give a JSON report written by leakhunt (--format json)",
        )
    version = root.data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError(
            f"{source}: no schema_version: not a leakhunt JSON report",
            hint="give a JSON report written by leakhunt (--format json)",
        )
    if version < 1:
        raise ReportError(
            f"{source}: schema_version {version} does not exist (the first is 1)",
            hint="give a JSON report written by leakhunt (--format json)",
        )
    if version > SCHEMA_VERSION:
        raise ReportError(
            f"{source}: schema_version {version} is newer than this leakhunt understands ({SCHEMA_VERSION})",
            hint="upgrade leakhunt to read this report",
        )
    try:
        kind = root.literal("kind", tuple(_READERS))
        return _READERS[kind](root)
    except ReportError as err:
        raise ReportError(f"{source}: {err.message}", hint=err.hint) from None


class _BadNumber(ValueError):
    """A number json.dumps never writes for leakhunt: raised from inside json.loads."""


# Every integer leakhunt writes (bytes, counts, pids, ids) fits in a signed 64-bit integer; hex
# addresses in an unsigned one. Larger ones come from a hostile or broken file, and would crash
# the pprof encoder or make float() overflow.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_ADDR_MAX = 2**64 - 1


def _shown(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"


def _parse_int(text: str) -> int:
    if len(text) > 20:
        raise _BadNumber(f"the integer {_shown(text)} is out of range (64 bits)")
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _BadNumber(f"the integer {text} is out of range (64 bits)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {_shown(text)} is out of range")
    return value


def _parse_constant(name: str) -> float:
    raise _BadNumber(f"{name} is not a number JSON allows (leakhunt writes null)")


def loads(text: str, *, source: str = "document") -> Document:
    """Parse JSON text into a document; raises ReportError on bad JSON or a bad document."""
    try:
        data = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except _BadNumber as err:
        raise ReportError(
            f"{source}: {err}", hint="give a JSON report written by leakhunt (--format json)"
        ) from None
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{source}: not JSON ({err.msg} at line {err.lineno} column {err.colno})",
            hint="give a JSON report written by leakhunt (--format json)",
        ) from None
    except RecursionError:
        raise ReportError(f"{source}: JSON nested too deeply") from None
    return from_dict(data, source=source)


def load(path: Path | str) -> Document:
    """Read a saved JSON report (``-`` reads standard input).

    Only regular files, standard input and pipes are read, at most ``MAX_DOCUMENT_BYTES``; a
    device, an endless or empty input is a ReportError (see leakhunt.inputfile).
    """
    name = str(path)
    data = read_document(name)
    source = "<stdin>" if name == "-" else name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(
            f"{source}: not UTF-8 text", hint="give a JSON report written by leakhunt"
        ) from None
    return loads(text, source=source)
