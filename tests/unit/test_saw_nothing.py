"""A run whose probes saw nothing is inconclusive, never a clean "no leak" (Investigation.blind_reason)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.cli.common import exit_status
from leakhunt.errors import EXIT_OK, EXIT_SAW_NOTHING
from leakhunt.model import DataQuality, Frame, Investigation, Snapshot, Stack, StackSample
from leakhunt.report import jsonio, markdown, views

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reports"
SCHEMA = Path(__file__).resolve().parents[2] / "leakhunt" / "report" / "schema-v2.json"


def real() -> Investigation:
    doc = jsonio.load(sorted(FIXTURES.glob("investigation-*.json"))[0])
    assert isinstance(doc, Investigation)
    return doc


def with_quality(inv: Investigation, **fields: object) -> Investigation:
    return dataclasses.replace(inv, quality=dataclasses.replace(inv.quality, **fields))  # type: ignore[arg-type]


def test_zero_allocations_counted_is_inconclusive_and_said_first() -> None:
    inv = with_quality(real(), allocations_seen=0, frees_seen=12)
    inv = dataclasses.replace(inv, findings=(), snapshots=tuple(Snapshot(s.t, ()) for s in inv.snapshots))
    reason = inv.blind_reason()
    assert reason is not None and "no allocation call (12 frees)" in reason
    assert views.verdict_sentence(inv).startswith("Inconclusive, not a clean result: ")
    assert "Inconclusive, not a clean result" in markdown.render_investigation(inv)[:600]
    flagged = {
        q.label: q.problem for q in views.quality_lines(inv.quality, snapshots=3, truncated_snapshots=0)
    }
    assert flagged["Allocations seen"] is True


def test_empty_snapshots_from_a_backend_that_does_not_count_are_inconclusive() -> None:
    inv = real()
    assert inv.quality.allocations_seen is None and inv.blind_reason() is None  # the real run saw stacks
    empty = dataclasses.replace(inv, findings=(), snapshots=tuple(Snapshot(s.t, ()) for s in inv.snapshots))
    reason = empty.blind_reason()
    assert reason is not None and "no outstanding allocation was seen" in reason


def test_counted_allocations_are_not_blind_and_no_snapshot_is_said_apart() -> None:
    assert with_quality(real(), allocations_seen=5).blind_reason() is None
    assert dataclasses.replace(real(), snapshots=()).blind_reason() is None  # "No data" covers it


def test_no_snapshot_never_exits_as_checked_and_clean() -> None:
    """A run that ended before its first snapshot proves nothing: status 4, attached or launched
    (a launched program that failed keeps its own status)."""
    empty = dataclasses.replace(real(), snapshots=(), findings=())
    assert exit_status(empty) == EXIT_SAW_NOTHING
    launched = dataclasses.replace(
        empty, target=dataclasses.replace(empty.target, launched=True, exit_code=0)
    )
    assert exit_status(launched) == EXIT_SAW_NOTHING
    failed = dataclasses.replace(launched, target=dataclasses.replace(launched.target, exit_code=7))
    assert exit_status(failed) == 7
    assert exit_status(real()) == EXIT_OK  # the real run took its snapshots and saw stacks


def test_a_command_stopped_at_the_end_of_the_run_is_no_failure() -> None:
    """`run --duration 60 -- ./server`: leakhunt stops the server with SIGTERM at the end; the
    status was 143, as if the server had failed. A command killed by a signal before the end (the
    run stopped because the target exited) keeps 128+N."""
    inv = real()
    assert inv.run.stop_reason == "duration"

    def launched(code: int, stop_reason: str) -> Investigation:
        target = dataclasses.replace(inv.target, launched=True, exit_code=code)
        return dataclasses.replace(
            inv, target=target, run=dataclasses.replace(inv.run, stop_reason=stop_reason)
        )

    assert exit_status(launched(-15, "duration")) == EXIT_OK
    assert exit_status(launched(-9, "duration")) == EXIT_OK  # it ignored SIGTERM and was killed
    assert exit_status(launched(-15, "target-exited")) == 143
    assert exit_status(launched(3, "target-exited")) == 3
    blind = dataclasses.replace(launched(-15, "duration"), snapshots=inv.snapshots[:1])
    assert exit_status(blind) == EXIT_SAW_NOTHING


def test_one_snapshot_is_inconclusive_whatever_it_holds() -> None:
    """One snapshot shows what is outstanding, not whether it grows: status 4 (it was 0), and the
    headline says it is not a clean result."""
    inv = real()
    one = dataclasses.replace(
        inv, snapshots=inv.snapshots[-1:], findings=analyze_snapshots(inv.snapshots[-1:])
    )
    assert one.findings and one.blind_reason() is None
    assert views.verdict_sentence(one).startswith("Inconclusive, not a clean result: one snapshot cannot")
    assert exit_status(one) == EXIT_SAW_NOTHING
    launched = dataclasses.replace(one, target=dataclasses.replace(one.target, launched=True, exit_code=0))
    assert exit_status(launched) == EXIT_SAW_NOTHING


def test_growth_seen_in_two_snapshots_only_is_inconclusive_not_a_cache() -> None:
    """Two snapshots of a stack that grew: a leak or a cache filling, nothing tells (it was called a
    plateau, "looks like a cache", with status 0)."""
    inv = real()
    two = tuple(
        Snapshot(float(t), tuple(StackSample(f.stack, b) for f in inv.findings[:1]))
        for t, b in ((5, 8_000_000), (10, 17_000_000))
    )
    judged = dataclasses.replace(inv, snapshots=two, findings=analyze_snapshots(two))
    assert [f.verdict for f in judged.findings] == ["unknown"]
    assert views.verdict_sentence(judged).startswith("Inconclusive, not a clean result: 1 stack(s) grew")
    assert "too few snapshots" in views.verdict_sentence(judged)
    assert exit_status(judged) == EXIT_SAW_NOTHING
    # a full map leads every report, but the stacks it tracked were judged: not "saw nothing"
    (grown,) = judged.findings
    full = dataclasses.replace(grown, reason="unknown: map full, 12 of its allocations were not tracked")
    assert exit_status(dataclasses.replace(judged, findings=(full,))) == EXIT_OK
    three = (*two, Snapshot(15.0, two[-1].stacks))  # then it stopped: a plateau, a clean result
    judged = dataclasses.replace(inv, snapshots=three, findings=analyze_snapshots(three))
    assert [f.verdict for f in judged.findings] == ["plateau"] and exit_status(judged) == EXIT_OK


def test_a_stack_of_allocator_frames_only_seen_in_two_snapshots_is_inconclusive_too() -> None:
    """Its reason starts with the allocator-only prefix, not with "unknown: too few snapshots":
    the status and the import summary looked for that start and took the run for a clean one."""
    inside = Stack((Frame("_int_malloc", 0x20, "libc.so.6"), Frame("malloc", 0x10, "libc.so.6")))
    two = tuple(Snapshot(float(t), (StackSample(inside, b),)) for t, b in ((5, 8_000_000), (10, 17_000_000)))
    judged = dataclasses.replace(real(), snapshots=two, findings=analyze_snapshots(two))
    (f,) = judged.findings
    assert f.verdict == "unknown" and "unknown: too few snapshots" in f.reason and f.too_few_snapshots
    assert views.verdict_sentence(judged).startswith("Inconclusive, not a clean result: 1 stack(s) grew")
    assert exit_status(judged) == EXIT_SAW_NOTHING


def test_counts_round_trip_through_json_and_validate() -> None:
    inv = with_quality(real(), allocations_seen=1234, frees_seen=1200)
    text = jsonio.dumps(inv)
    jsonschema.validate(json.loads(text), json.loads(SCHEMA.read_text()))
    again = jsonio.loads(text)
    assert isinstance(again, Investigation)
    assert (again.quality.allocations_seen, again.quality.frees_seen) == (1234, 1200)
    # reports written before the fields existed read as "not counted"
    raw = json.loads(text)
    del raw["quality"]["allocations_seen"], raw["quality"]["frees_seen"]
    old = jsonio.loads(json.dumps(raw))
    assert isinstance(old, Investigation) and old.quality == DataQuality(
        **{**old.quality.__dict__, "allocations_seen": None, "frees_seen": None}
    )
