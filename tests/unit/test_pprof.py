"""pprof export, read back by real consumers: the protobuf parser, ``go tool pprof`` and speedscope.

Inputs: the real investigations in tests/fixtures/diff/ (BCC memleak 0.26 runs of
tests/targets/fixleak.c; see the README there) and model-built documents for edge cases.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.model import (
    BackendInfo,
    Finding,
    Frame,
    Investigation,
    RunInfo,
    SeriesPoint,
    Stack,
    Target,
    TraceProcess,
    TraceResult,
    Unfreed,
)
from leakhunt.report import jsonio, render
from leakhunt.report.pprof import read_profile, render_pprof
from tests.conftest import diff_fixture
from tests.viewers import go_pprof, go_pprof_raw, speedscope_number, speedscope_sandwich

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "diff"


def load_investigation(name: str) -> Investigation:
    return diff_fixture(name)


def pprof_bytes(doc: Investigation | TraceResult) -> bytes:
    buf = io.BytesIO()
    render_pprof(doc, buf)
    return buf.getvalue()


def write(tmp_path: Path, doc: Investigation | TraceResult, name: str = "leak.pb.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(pprof_bytes(doc))
    return path


def stacks_of(profile: Any) -> dict[tuple[str, ...], list[int]]:
    """Function names per sample, innermost first, from a parsed Profile message."""
    strings = list(profile.string_table)
    functions = {f.id: strings[f.name] for f in profile.function}
    locations = {loc.id: functions[loc.line[0].function_id] for loc in profile.location}
    return {tuple(locations[i] for i in s.location_id): list(s.value) for s in profile.sample}


def test_protobuf_parser_reads_types_values_strings_and_locations() -> None:
    inv = load_investigation("investigation-v1.json")
    data = pprof_bytes(inv)
    assert data[:2] == b"\x1f\x8b"  # gzip, as pprof files are
    profile: Any = read_profile(data)
    strings = list(profile.string_table)
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("inuse_space", "bytes"),
        ("inuse_objects", "count"),
        ("growth_space", "bytes"),
    ]
    assert strings[profile.default_sample_type] == "inuse_space"
    stacks = stacks_of(profile)
    for f in inv.findings:
        names = tuple(fr.symbol for fr in f.stack.frames)
        assert stacks[names][:2] == [f.outstanding_bytes, f.count]
    # Locations keep the addresses memleak printed, and each module is a mapping.
    addresses = {loc.address for loc in profile.location}
    assert inv.findings[0].stack.frames[0].address in addresses
    assert {strings[m.filename] for m in profile.mapping} == {"fixleak", "libc.so.6"}
    assert profile.duration_nanos == int(inv.run.duration_s * 1e9)
    labels = {strings[label.key]: strings[label.str] or label.num for label in profile.sample[0].label}
    assert labels["verdict"] == inv.findings[0].verdict and labels["rank"] == 1
    # What Pyroscope and Parca keep apart profiles of many hosts by.
    assert labels["pid"] == str(inv.target.pid) and labels["comm"] == inv.target.comm
    assert labels["backend"] == inv.backend.name and labels.get("host", "") == inv.run.host


def test_go_tool_pprof_reads_samples_and_functions(tmp_path: Path) -> None:
    inv = load_investigation("investigation-v1.json")
    raw = go_pprof_raw(write(tmp_path, inv))
    assert raw.sample_types == ("inuse_space/bytes", "inuse_objects/count", "growth_space/bytes")
    got = {tuple(raw.functions[i] for i in s.location_ids): s for s in raw.samples}
    for f in inv.findings:
        sample = got[tuple(fr.symbol for fr in f.stack.frames)]
        assert sample.values[:2] == (f.outstanding_bytes, f.count)
        assert f"verdict:[{f.verdict}]" in sample.labels
        assert f"comm:[{inv.target.comm}]" in sample.labels and f"pid:[{inv.target.pid}]" in sample.labels
    assert set(raw.mappings) == {"fixleak", "libc.so.6"}


def test_go_tool_pprof_top_ranks_the_leak_by_growth(tmp_path: Path) -> None:
    path = write(tmp_path, load_investigation("investigation-v2.json"))
    top = go_pprof(path, "-top", "-sample_index=growth_space", "-tagfocus=verdict=leak")
    flat = [
        line.split()[-1]
        for line in top.splitlines()
        if line.strip().endswith(("_request", "_session", "cache"))
    ]
    # Only the leaks (tagfocus), largest growth first; the plateauing cache is filtered out.
    assert flat == ["open_session", "log_request"]
    assert "Type: growth_space" in top


def test_speedscope_reads_the_pprof_file(tmp_path: Path) -> None:
    inv = load_investigation("investigation-v1.json")
    rows = {r.name: r for r in speedscope_sandwich(write(tmp_path, inv))}
    by_top = {f.stack.top: f for f in inv.findings}
    for name in ("parse_request", "open_session", "fill_cache"):
        # speedscope shows bytes rounded to 2 decimals of KB/MB
        assert abs(speedscope_number(rows[name].self_) - by_top[name].outstanding_bytes) < 0.01 * (
            by_top[name].outstanding_bytes
        )
    assert speedscope_number(rows["main"].self_) == 0


def test_render_dispatch_gives_the_same_bytes_every_time() -> None:
    inv = load_investigation("investigation-v3.json")
    buf = io.BytesIO()
    render(inv, "pprof", buf)
    assert buf.getvalue() == pprof_bytes(inv)  # deterministic: gzip mtime 0
    assert gzip.decompress(buf.getvalue())


def test_trace_profile(tmp_path: Path) -> None:
    tr = TraceResult(
        target=Target(pid=42, comm="trace_leaker", cmdline=("./trace_leaker",)),
        backend=BackendInfo(name="bcc", tool="memleak-bpfcc", version="0.26.0", argv=()),
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=5.0),
        processes=(
            TraceProcess(
                pid=42,
                comm="trace_leaker",
                alloc_count=3,
                free_count=0,
                unknown_frees=0,
                unfreed=(Unfreed(0x1000, 64, 42, 1.0), Unfreed(0x2000, 64, 42, 2.0)),
            ),
        ),
        end_time=5.0,
    )
    raw = go_pprof_raw(write(tmp_path, tr))
    assert [(tuple(raw.functions[i] for i in s.location_ids), s.values) for s in raw.samples] == [
        (("64-byte blocks", "trace_leaker (pid 42)"), (128, 2, 128))
    ]


def test_real_trace_read_by_go_tool_pprof(tmp_path: Path) -> None:
    tr = jsonio.load(FIXTURES.parent / "exports" / "trace-bcc-0.26.json")
    assert isinstance(tr, TraceResult)
    raw = go_pprof_raw(write(tmp_path, tr))
    per_process: dict[str, int] = {}
    for s in raw.samples:
        root = raw.functions[s.location_ids[-1]]
        per_process[root] = per_process.get(root, 0) + s.values[0]
    assert per_process == {f"{p.comm} (pid {p.pid})": p.unfreed_bytes for p in tr.processes}


def test_unknown_rates_and_durations_do_not_break_the_profile() -> None:
    base = load_investigation("investigation-v1.json")
    odd = replace(base.findings[0], growth_bytes_per_sec=float("nan"))
    inv = replace(base, findings=(odd,), run=replace(base.run, duration_s=float("inf")))
    profile: Any = read_profile(pprof_bytes(inv))
    strings = list(profile.string_table)
    rate = next(label for label in profile.sample[0].label if strings[label.key] == "growth_rate")
    assert rate.num == 0 and profile.duration_nanos == 0


names = st.text(min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, st.integers(0, 2**40), st.integers(0, 2**64 - 1)), min_size=1, max_size=8))
def test_any_frames_round_trip_through_protobuf(frames: list[tuple[str, int, int]]) -> None:
    stack = Stack(tuple(Frame(n, off, "mod;\n", addr) for n, off, addr in frames))
    finding = Finding(
        rank=1,
        stack=stack,
        verdict="leak",
        outstanding_bytes=2**40,
        count=3,
        growth_bytes_per_sec=-5.5,
        confidence=1.0,
        first_seen=0.0,
        last_seen=1.0,
        series=(SeriesPoint(0.0, 2**41), SeriesPoint(1.0, 2**40)),
    )
    base = load_investigation("investigation-v3.json")
    inv = Investigation(**{**base.__dict__, "findings": (finding,), "snapshots": ()})
    profile: Any = read_profile(pprof_bytes(inv))
    stacks = stacks_of(profile)
    # growth is clamped at 0: a shrinking stack does not draw a negative flame
    assert stacks == {tuple(n for n, _, _ in frames): [2**40, 3, 0]}
    assert {loc.address for loc in profile.location} == {addr for _, _, addr in frames}
