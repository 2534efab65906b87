"""The JSON writer of schema version 1 (indented, one object per series point), as leakhunt had it.

Kept only as the reference scripts/bench_long_runs.py times the version 2 writer against. Not used by
leakhunt itself (leakhunt.report.jsonio reads version 1 files and writes version 2).
"""

from __future__ import annotations

import json
import math
import re
from typing import IO, TypeVar

from leakhunt.model import (
    BackendInfo,
    DataQuality,
    Frame,
    Investigation,
    MemSample,
    ScanResult,
    Stack,
    Target,
    TraceResult,
    TrendEvidence,
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


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


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
        if stack not in self.ids:
            self.ids[stack] = len(self.ids)
        return self.ids[stack]

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
    return out


def _mem(m: MemSample) -> dict[str, object]:
    # anon is derived (rss - shared + swap); written for readers, ignored by load().
    return {"t": _num(m.t), "rss": m.rss, "vms": m.vms, "shared": m.shared, "swap": m.swap, "anon": m.anon}


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
            "series": [
                {"t": _num(p.t), "outstanding_bytes": p.outstanding_bytes, "count": p.count} for p in f.series
            ],
        }
        for f in inv.findings
    ]
    snapshots = [
        {
            "t": _num(s.t),
            "clock": s.clock,
            "truncated": s.truncated,
            "top_n": s.top_n,
            "addresses": [[_hex(a), size] for a, size in s.addresses],
            "stacks": [
                {
                    "stack_id": table.id(ss.stack),
                    "outstanding_bytes": ss.outstanding_bytes,
                    "count": ss.count,
                    "addresses": [[_hex(a), size] for a, size in ss.addresses],
                }
                for ss in s.stacks
            ],
            **({"untracked": [[table.id(st), n] for st, n in s.untracked]} if s.untracked else {}),
        }
        for s in inv.snapshots
    ]
    return {
        "schema_version": 1,
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
        "quality": _quality(inv.quality),
        "memory": [_mem(m) for m in inv.memory],
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
        "schema_version": 1,
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
                "samples": [_mem(m) for m in p.samples],
            }
            for p in scan.processes
        ],
        "investigations": [_investigation(i) for i in scan.investigations],
        "stop_reason": scan.run.stop_reason,
        "planned_duration_s": None if scan.planned_duration_s is None else _num(scan.planned_duration_s),
    }


def _trace(tr: TraceResult) -> dict[str, object]:
    return {
        "schema_version": 1,
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
                "unfreed": [
                    {"address": _hex(u.address), "size": u.size, "tid": u.tid, "time": _num(u.time)}
                    for u in p.unfreed
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


# An object or array holding no other object or array, spread over lines by json.dumps(indent=...).
# Newlines inside JSON strings are always escaped, so a raw newline after "{" or "[" is structure.
_LEAF = re.compile(r"[{\[]\n[^{}\[\]]*?\n *[}\]]")
_LEAF_MAX = 160


def _join_leaf(m: re.Match[str]) -> str:
    text = m.group(0)
    if '"' in text and len(text) > _LEAF_MAX:
        return text  # long lists of strings (frames, command lines) read better one per line
    # split("\n") and strip(" "): str.splitlines() and strip() would also cut at characters such
    # as U+0085 or U+2028, which ensure_ascii=False leaves raw inside strings.
    parts = [line.strip(" ") for line in text.split("\n")]
    return parts[0] + " ".join(parts[1:-1]) + parts[-1]


def dumps(doc: Document) -> str:
    """The document as JSON text (UTF-8, ends with a newline).

    Indented for people, except that small leaf objects and arrays (a snapshot's entry for one
    stack, a series point, an [address, size] pair) stay on one line: a long run has hundreds of
    thousands of them, and one line each keeps the file a fraction of the fully indented size.
    """
    text = json.dumps(to_dict(doc), indent=1, ensure_ascii=False, allow_nan=False)
    # C1 controls and bidi overrides as \uNNNN: the same JSON, harmless when shown on a terminal
    return escape_json_text(_LEAF.sub(_join_leaf, text)) + "\n"


def dump(doc: Document, stream: IO[str]) -> None:
    """Write the document as JSON to a text stream."""
    stream.write(dumps(doc))
