"""JSON reports: load(dump(x)) == x for every document, the documented shape, clear errors."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from leakhunt.errors import ReportError
from leakhunt.model import SCHEMA_VERSION, Investigation, RunInfo, ScanResult, TraceResult, Unfreed
from leakhunt.report import jsonio
from tests.report_strategies import documents

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reports"
REAL = sorted(FIXTURES.glob("investigation-*.json"))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_round_trip_of_any_document(doc: jsonio.Document) -> None:
    text = jsonio.dumps(doc)
    # strict JSON (no NaN), and what json writes of to_dict (a trace's blocks are written apart)
    assert json.loads(text) == json.loads(json.dumps(jsonio.to_dict(doc)))
    assert jsonio.loads(text) == doc


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_fixture_round_trips_and_has_the_documented_shape(path: Path) -> None:
    assert REAL, "no report fixtures"
    doc = jsonio.load(path)
    assert isinstance(doc, Investigation)
    assert jsonio.loads(jsonio.dumps(doc)) == doc
    data = jsonio.to_dict(doc)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["kind"] == "investigation"
    for key in ("target", "backend", "snapshots", "findings", "stacks", "quality", "memory"):
        assert key in data
    findings = typing.cast(list[dict[str, object]], data["findings"])
    top = findings[0]
    assert top["rank"] == 1 and top["verdict"] == "leak"
    frames = typing.cast(list[str], top["frames"])
    # frames are text, innermost first, as function+0xoff [module]
    assert frames[0].startswith("leak_request+0x") and frames[0].endswith("[report_leaker]")
    assert isinstance(top["outstanding_bytes"], int) and isinstance(top["growth_bytes_per_sec"], float)


def test_v1_fixtures_are_read_and_the_writer_is_deterministic() -> None:
    """The saved fixtures were written in schema v1: read, they dump as v2 and read back the same,
    and a second dump is byte-identical."""
    for path in REAL:
        assert json.loads(path.read_text())["schema_version"] == 1
        doc = jsonio.load(path)
        text = jsonio.dumps(doc)
        assert json.loads(text)["schema_version"] == 2
        again = jsonio.loads(text)
        assert again == doc
        assert jsonio.dumps(again) == text


def test_v2_writes_series_and_snapshots_as_arrays() -> None:
    doc = jsonio.load(REAL[0])
    assert isinstance(doc, Investigation)
    data = json.loads(jsonio.dumps(doc))
    top = data["findings"][0]
    assert top["series"] == {
        "t": [p.t for p in doc.findings[0].series],
        "outstanding_bytes": [p.outstanding_bytes for p in doc.findings[0].series],
        "count": [p.count for p in doc.findings[0].series],
    }
    snap = data["snapshots"][-1]
    assert len(snap["stack_ids"]) == len(snap["outstanding_bytes"]) == len(snap["counts"])
    assert set(data["memory"]) == {"t", "rss", "vms", "shared", "swap", "anon"}
    # one line per finding and per snapshot
    lines = jsonio.dumps(doc).splitlines()
    assert sum(1 for line in lines if line.startswith('  {"rank": ')) == len(doc.findings)


def test_v2_arrays_of_different_lengths_are_refused() -> None:
    data = json.loads(jsonio.dumps(jsonio.load(REAL[0])))
    data["findings"][0]["series"]["t"].append(1.0)
    with pytest.raises(ReportError, match="differ in length"):
        jsonio.loads(json.dumps(data))


def test_non_finite_numbers_become_null_and_read_back_as_nan() -> None:
    doc = jsonio.load(REAL[0])
    assert isinstance(doc, Investigation)
    f0 = dataclasses.replace(doc.findings[0], growth_bytes_per_sec=math.inf)
    doc = dataclasses.replace(doc, findings=(f0, *doc.findings[1:]))
    text = jsonio.dumps(doc)
    assert json.loads(text)["findings"][0]["growth_bytes_per_sec"] is None
    back = jsonio.loads(text)
    assert isinstance(back, Investigation)
    assert math.isnan(back.findings[0].growth_bytes_per_sec)


def _mutated(mutate: Any) -> str:
    data = jsonio.to_dict(jsonio.load(REAL[0]))
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("target"), "$.target: missing"),
        (lambda d: d["target"].update(pid="x"), "$.target.pid: expected an integer"),
        (lambda d: d["findings"][0].update(verdict="maybe"), "$.findings[0].verdict: expected one of"),
        (lambda d: d["findings"][0].update(stack_id=999), "no stack with id 999"),
        (lambda d: d.update(kind="banana"), "$.kind: expected one of"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this leakhunt understands"),
        (lambda d: d.pop("schema_version"), "not a leakhunt JSON report"),
        (lambda d: d["stacks"][0]["frame_fields"][0].update(address="zz"), "expected a hex address"),
        (lambda d: d["snapshots"].append(3), "$.snapshots[12]: expected an object"),
    ],
)
def test_bad_documents_raise_report_error_naming_the_field(mutate: Any, message: str) -> None:
    with pytest.raises(ReportError) as err:
        jsonio.loads(_mutated(mutate), source="x.json")
    assert message in str(err.value)
    assert str(err.value).startswith("x.json: ")


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"x"', "{}", "[" * 100000])
def test_garbage_raises_report_error_never_a_traceback(text: str) -> None:
    with pytest.raises(ReportError):
        jsonio.loads(text)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such file"):
        jsonio.load(tmp_path / "missing.json")
    with pytest.raises(ReportError, match="is a directory"):
        jsonio.load(tmp_path)
    bad = tmp_path / "bin.json"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ReportError, match="not UTF-8"):
        jsonio.load(bad)


def test_load_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    text = REAL[0].read_text(encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert jsonio.load("-") == jsonio.load(REAL[0])


def test_stacks_are_stored_once_and_ids_follow_the_ranking() -> None:
    data = jsonio.to_dict(jsonio.load(REAL[0]))
    stacks = typing.cast(list[dict[str, object]], data["stacks"])
    findings = typing.cast(list[dict[str, object]], data["findings"])
    keys = [tuple(typing.cast(list[str], s["frames"])) for s in stacks]
    assert len(keys) == len(set(keys))
    assert [f["stack_id"] for f in findings] == list(range(len(findings)))


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_schema_md_documents_every_key_written(doc: jsonio.Document) -> None:
    schema = (Path(jsonio.__file__).parent / "SCHEMA.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*)`", schema))
    missing = _keys(jsonio.to_dict(doc)) - documented
    assert not missing, f"keys written but not documented in SCHEMA.md: {sorted(missing)}"


def test_one_line_leaves_never_change_strings() -> None:
    """Compact leaves are joined at raw newlines only: strings with line-like characters survive."""
    doc = jsonio.load(REAL[0])
    assert isinstance(doc, Investigation)
    odd = ("a\x85b", "c\u2028d", "e\nf", " {g} ", "[h]\n", "\r", "  ")
    doc = dataclasses.replace(
        doc, target=dataclasses.replace(doc.target, cmdline=odd), options=(("k", "\x85 "),)
    )
    text = jsonio.dumps(doc)
    assert jsonio.loads(text) == doc
    assert '\n  "cmdline": [' in text or '"cmdline": ["a' in text


def _scan(stop_reason: str = "duration", **changes: Any) -> ScanResult:
    scan = ScanResult(
        run=RunInfo(
            started_at="2026-11-25T09:00:00+00:00", duration_s=12.25, host="box", stop_reason=stop_reason
        ),
        interval_s=1.0,
        processes=(),
        sampled=7,
        unreadable=0,
    )
    return dataclasses.replace(scan, **changes)


def test_an_interrupted_scan_says_so_and_round_trips() -> None:
    scan = _scan(stop_reason="interrupted", planned_duration_s=60.0)
    data = json.loads(jsonio.dumps(scan))
    assert data["stop_reason"] == "interrupted" and data["planned_duration_s"] == 60.0
    assert data["duration_s"] == 12.25
    assert jsonio.loads(jsonio.dumps(scan)) == scan


def test_a_scan_written_before_stop_reason_reads_as_a_full_window() -> None:
    data = jsonio.to_dict(_scan(stop_reason="interrupted", planned_duration_s=60.0))
    del data["stop_reason"], data["planned_duration_s"]
    back = jsonio.loads(json.dumps(data))
    assert isinstance(back, ScanResult)
    assert back.run.stop_reason == "duration" and back.planned_duration_s is None
    assert back == _scan()


def test_unfreed_blocks_are_written_as_the_encoder_writes_them() -> None:
    """A trace's unfreed blocks are formatted directly (not through the encoder): the same JSON,
    including times that are not finite (null) and values beyond 64 bits."""
    tr = jsonio.load(FIXTURES.parent / "exports" / "trace-bcc-0.26.json")
    assert isinstance(tr, TraceResult)
    finite = (Unfreed(0x55D0C0A00040, 128, 4243, 1000.000003), Unfreed(1 << 70, 1 << 65, 7, 0.1 + 0.2))
    odd = [(*finite, Unfreed(0x10 * k, k, k, t)) for k, t in enumerate((math.inf, -math.inf, math.nan), 1)]
    for unfreed in (finite, *odd, ()):
        proc = dataclasses.replace(tr.processes[0], unfreed=unfreed)
        doc = dataclasses.replace(tr, processes=(proc, *tr.processes[1:]))
        text = jsonio.dumps(doc)
        assert json.loads(text) == json.loads(json.dumps(jsonio.to_dict(doc)))
        written = json.loads(text)["processes"][0]["unfreed"]
        assert [b["time"] for b in written] == [u.time if math.isfinite(u.time) else None for u in unfreed]
        if unfreed:
            assert written[0]["address"] == "0x55d0c0a00040"
            assert written[1] == {"address": hex(1 << 70), "size": 1 << 65, "tid": 7, "time": 0.1 + 0.2}
