"""pprof export: a gzip-compressed ``perftools.profiles.Profile`` (profile.proto), the format of
``go tool pprof``, speedscope, Pyroscope and Parca.

The message classes are built at import time from a ``FileDescriptorProto`` written here from the
documented profile.proto (package ``perftools.profiles``), with the ``protobuf`` library doing all
encoding: no generated module to keep in step with the protobuf runtime, no hand-made bytes.

What the profile holds, for an investigation:

- sample types ``inuse_space/bytes`` (the default), ``inuse_objects/count`` and
  ``growth_space/bytes`` (bytes gained over the run, clamped at 0; see ``report.export``);
- one sample per finding; labels ``verdict`` (text), ``rank`` and ``growth_rate`` (bytes per
  second, rounded) so ``pprof -tagfocus=verdict=leak`` shows only leaks, and ``host``, ``pid``,
  ``comm`` and ``backend`` (what Pyroscope and Parca keep as profile labels, so profiles of many
  hosts stay apart);
- one location per distinct frame (symbol, offset, module, address): its address when the tool
  printed one, one line pointing at the function, a mapping per module (file name only: leakhunt
  does not know load addresses, so ``has_functions`` is set and pprof needs no symbolization);
- ``period_type`` space/bytes with ``period`` = the sampling rate (1 = every allocation),
  ``time_nanos`` / ``duration_nanos`` from the run, and comments naming target and backend.

A trace becomes the synthetic process / block-size stacks of ``report.export``.
"""

from __future__ import annotations

import gzip
import math
from datetime import datetime
from functools import cache
from typing import IO, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from leakhunt.model import Frame, Investigation, TraceResult
from leakhunt.report.export import export_stacks
from leakhunt.report.jsonio import Document

PACKAGE = "perftools.profiles"
SAMPLE_TYPES: tuple[tuple[str, str], ...] = (
    ("inuse_space", "bytes"),
    ("inuse_objects", "count"),
    ("growth_space", "bytes"),
)

_F = descriptor_pb2.FieldDescriptorProto
# (message, ((field, number, type, repeated, message type), ...)) from profile.proto.
_SCHEMA: tuple[tuple[str, tuple[tuple[str, int, int, bool, str], ...]], ...] = (
    (
        "Profile",
        (
            ("sample_type", 1, _F.TYPE_MESSAGE, True, "ValueType"),
            ("sample", 2, _F.TYPE_MESSAGE, True, "Sample"),
            ("mapping", 3, _F.TYPE_MESSAGE, True, "Mapping"),
            ("location", 4, _F.TYPE_MESSAGE, True, "Location"),
            ("function", 5, _F.TYPE_MESSAGE, True, "Function"),
            ("string_table", 6, _F.TYPE_STRING, True, ""),
            ("drop_frames", 7, _F.TYPE_INT64, False, ""),
            ("keep_frames", 8, _F.TYPE_INT64, False, ""),
            ("time_nanos", 9, _F.TYPE_INT64, False, ""),
            ("duration_nanos", 10, _F.TYPE_INT64, False, ""),
            ("period_type", 11, _F.TYPE_MESSAGE, False, "ValueType"),
            ("period", 12, _F.TYPE_INT64, False, ""),
            ("comment", 13, _F.TYPE_INT64, True, ""),
            ("default_sample_type", 14, _F.TYPE_INT64, False, ""),
        ),
    ),
    ("ValueType", (("type", 1, _F.TYPE_INT64, False, ""), ("unit", 2, _F.TYPE_INT64, False, ""))),
    (
        "Sample",
        (
            ("location_id", 1, _F.TYPE_UINT64, True, ""),
            ("value", 2, _F.TYPE_INT64, True, ""),
            ("label", 3, _F.TYPE_MESSAGE, True, "Label"),
        ),
    ),
    (
        "Label",
        (
            ("key", 1, _F.TYPE_INT64, False, ""),
            ("str", 2, _F.TYPE_INT64, False, ""),
            ("num", 3, _F.TYPE_INT64, False, ""),
            ("num_unit", 4, _F.TYPE_INT64, False, ""),
        ),
    ),
    (
        "Mapping",
        (
            ("id", 1, _F.TYPE_UINT64, False, ""),
            ("memory_start", 2, _F.TYPE_UINT64, False, ""),
            ("memory_limit", 3, _F.TYPE_UINT64, False, ""),
            ("file_offset", 4, _F.TYPE_UINT64, False, ""),
            ("filename", 5, _F.TYPE_INT64, False, ""),
            ("build_id", 6, _F.TYPE_INT64, False, ""),
            ("has_functions", 7, _F.TYPE_BOOL, False, ""),
            ("has_filenames", 8, _F.TYPE_BOOL, False, ""),
            ("has_line_numbers", 9, _F.TYPE_BOOL, False, ""),
            ("has_inline_frames", 10, _F.TYPE_BOOL, False, ""),
        ),
    ),
    (
        "Location",
        (
            ("id", 1, _F.TYPE_UINT64, False, ""),
            ("mapping_id", 2, _F.TYPE_UINT64, False, ""),
            ("address", 3, _F.TYPE_UINT64, False, ""),
            ("line", 4, _F.TYPE_MESSAGE, True, "Line"),
            ("is_folded", 5, _F.TYPE_BOOL, False, ""),
        ),
    ),
    (
        "Line",
        (
            ("function_id", 1, _F.TYPE_UINT64, False, ""),
            ("line", 2, _F.TYPE_INT64, False, ""),
        ),
    ),
    (
        "Function",
        (
            ("id", 1, _F.TYPE_UINT64, False, ""),
            ("name", 2, _F.TYPE_INT64, False, ""),
            ("system_name", 3, _F.TYPE_INT64, False, ""),
            ("filename", 4, _F.TYPE_INT64, False, ""),
            ("start_line", 5, _F.TYPE_INT64, False, ""),
        ),
    ),
)


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """profile.proto as a FileDescriptorProto (proto3, package perftools.profiles)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="leakhunt/profile.proto", package=PACKAGE, syntax="proto3")
    for msg_name, fields in _SCHEMA:
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, repeated, type_name in fields:
            field = msg.field.add(
                name=name,
                number=number,
                type=ftype,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    return fdp


@cache
def profile_class() -> type[Message]:
    """The ``perftools.profiles.Profile`` message class (from a private descriptor pool)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Profile"))


class _Builder:
    """Interns strings, functions, mappings and locations while samples are added."""

    def __init__(self) -> None:
        # Built-at-runtime messages have no static attributes: the Any stays inside this class.
        self.profile: Any = profile_class()()
        self.strings: dict[str, int] = {}
        self.functions: dict[tuple[str, str], int] = {}
        self.mappings: dict[str, int] = {}
        self.locations: dict[tuple[str, int | None, str, int | None], int] = {}
        self.string("")  # string_table[0] must be ""

    def string(self, text: str) -> int:
        idx = self.strings.get(text)
        if idx is None:
            idx = len(self.strings)
            self.strings[text] = idx
            self.profile.string_table.append(text)
        return idx

    def mapping(self, module: str) -> int:
        mid = self.mappings.get(module)
        if mid is None:
            mid = len(self.mappings) + 1
            self.mappings[module] = mid
            self.profile.mapping.add(id=mid, filename=self.string(module), has_functions=True)
        return mid

    def function(self, symbol: str, module: str) -> int:
        key = (symbol, module)
        fid = self.functions.get(key)
        if fid is None:
            fid = len(self.functions) + 1
            self.functions[key] = fid
            name = self.string(symbol)
            self.profile.function.add(id=fid, name=name, system_name=name)
        return fid

    def location(self, frame: Frame) -> int:
        module = frame.module or ""
        key = (frame.symbol, frame.offset, module, frame.address)
        lid = self.locations.get(key)
        if lid is None:
            lid = len(self.locations) + 1
            self.locations[key] = lid
            loc = self.profile.location.add(id=lid, address=frame.address or 0)
            if module:
                loc.mapping_id = self.mapping(module)
            loc.line.add(function_id=self.function(frame.symbol or "[unknown]", module))
        return lid


def _int(value: float) -> int:
    """A float as an int64 sample value; NaN and infinities (no estimate) become 0."""
    return round(value) if math.isfinite(value) else 0


def _time_nanos(started_at: str) -> int:
    try:
        return int(datetime.fromisoformat(started_at).timestamp() * 1e9)
    except ValueError:
        return 0


def build_profile(doc: Document) -> Message:
    """The document as a ``perftools.profiles.Profile`` message (not yet serialized)."""
    b = _Builder()
    p = b.profile
    for type_name, unit in SAMPLE_TYPES:
        p.sample_type.add(type=b.string(type_name), unit=b.string(unit))
    p.default_sample_type = b.string("inuse_space")
    p.period_type.type = b.string("space")
    p.period_type.unit = b.string("bytes")
    if isinstance(doc, Investigation | TraceResult):
        p.period = max(doc.quality.sample_rate, 1)
        p.time_nanos = _time_nanos(doc.run.started_at)
        p.duration_nanos = max(_int(doc.run.duration_s * 1e9), 0)
        kind = "trace" if isinstance(doc, TraceResult) else "investigation"
        version = f" {doc.run.leakhunt_version}" if doc.run.leakhunt_version else ""
        comments = [
            f"leakhunt{version} {kind} of {doc.target.comm} (pid {doc.target.pid})",
            f"backend {doc.backend.name} {doc.backend.version}".strip(),
        ]
        for text in comments:
            p.comment.append(b.string(text))
    key_verdict, key_rank, key_rate = b.string("verdict"), b.string("rank"), b.string("growth_rate")
    unit_rate = b.string("bytes_per_second")
    origin: list[tuple[int, str]] = []
    if isinstance(doc, Investigation | TraceResult):
        origin = [
            (b.string(key), value)
            for key, value in (
                ("host", doc.run.host),
                ("pid", str(doc.target.pid)),
                ("comm", doc.target.comm),
                ("backend", doc.backend.name),
            )
            if value
        ]
    for stack in export_stacks(doc):
        sample = p.sample.add()
        for frame in stack.frames:  # innermost first, as pprof wants: location_id[0] is the leaf
            sample.location_id.append(b.location(frame))
        sample.value.extend([stack.outstanding_bytes, stack.count or 0, max(stack.growth_bytes, 0)])
        if stack.verdict:
            sample.label.add(key=key_verdict, str=b.string(stack.verdict))
        if stack.rank is not None:
            sample.label.add(key=key_rank, num=stack.rank)
        sample.label.add(key=key_rate, num=_int(stack.growth_bytes_per_sec), num_unit=unit_rate)
        for key, value in origin:
            sample.label.add(key=key, str=b.string(value))
    message: Message = p
    return message


def render_pprof(doc: Document, stream: IO[bytes]) -> None:
    """Write ``doc`` as a gzip-compressed pprof profile (``.pb.gz``) to a binary stream."""
    data = build_profile(doc).SerializeToString()
    # mtime=0: the same document always gives the same bytes.
    stream.write(gzip.compress(data, mtime=0))


def read_profile(data: bytes) -> Message:
    """Parse a ``.pb.gz`` (or uncompressed) profile back into a Profile message."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    message = profile_class()()
    message.ParseFromString(data)
    return message
