"""A run whose probes saw nothing is inconclusive, never a clean "no leak" (Investigation.blind_reason)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema

from leakhunt.model import DataQuality, Investigation, Snapshot
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
