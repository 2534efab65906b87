"""``leakhunt diff``: matching stacks across builds, fixed/new/still, exit codes, the reports.

The main inputs are real: tests/fixtures/diff/investigation-v{1,2,3}.json are BCC memleak runs of
tests/targets/fixleak.c built as VERSION=1 (two leaks), 2 (one fixed, one still, one new) and 3
(all fixed); see the README there. Edge cases use documents built from the model.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace

import pytest
from markdown_it import MarkdownIt

from leakhunt.analyze.diff import (
    DiffResult,
    diff_investigations,
    match_key,
    normalize_symbol,
    require_investigation,
)
from leakhunt.errors import UsageError
from leakhunt.model import Finding, Frame, Investigation, RunInfo, ScanResult, Snapshot, Stack
from leakhunt.report import render as render_diff
from tests.conftest import diff_fixture


def load(v: int) -> Investigation:
    return diff_fixture(f"investigation-v{v}.json")


def statuses(result: DiffResult) -> dict[str, str]:
    return {e.title: e.status for e in result.entries}


def test_half_fixed_build_shows_fixed_still_and_new() -> None:
    result = diff_investigations(load(1), load(2))
    assert statuses(result) == {
        "parse_request": "fixed",
        "open_session": "still",
        "log_request": "new",
        "fill_cache": "other",  # a plateau in both builds is no leak
    }
    # ASLR moved every address between the two runs, yet the stacks match.
    v1, v2 = (next(f for f in load(v).findings if f.stack.top == "open_session") for v in (1, 2))
    assert {fr.address for fr in v1.stack.frames}.isdisjoint(fr.address for fr in v2.stack.frames)
    assert [e.status for e in result.entries] == ["new", "still", "fixed", "other"]
    assert result.verdict().startswith("Not fixed")
    assert result.warnings == ()


def test_exit_codes_for_ci() -> None:
    half = diff_investigations(load(1), load(2))
    assert half.exit_code("any") == 1
    assert half.exit_code("new") == 1
    assert half.exit_code("never") == 0
    fixed = diff_investigations(load(1), load(3))
    assert [e.status for e in fixed.entries] == ["fixed", "fixed", "other"]
    assert fixed.exit_code("any") == 0
    assert fixed.verdict().startswith("Fixed")
    # A known leak that remains fails "any" but not "new".
    known = diff_investigations(load(2), load(2))
    assert {e.status for e in known.entries} == {"still", "other"}
    assert (known.exit_code("any"), known.exit_code("new")) == (1, 0)
    worse = diff_investigations(load(3), load(1))
    assert {e.title for e in worse.new} == {"parse_request", "open_session"}
    assert worse.exit_code("new") == 1


def test_match_key_ignores_offsets_addresses_modules_clones_and_start_frames() -> None:
    a = (
        Frame("leak.constprop.0", 0x12, "app", 0x5555),
        Frame("[unknown]", None, "libfoo.so"),
        Frame("main", 0x21, "app", 0x5600),
        Frame("__libc_start_call_main", 0x7A, "libc.so.6", 0x7F00),
    )
    b = (Frame("leak", 0x40), Frame("main", 0x30), Frame("__libc_start_main", 0x80), Frame("_start", 0x2A))
    assert match_key(a) == match_key(b) == ("leak", "main")
    assert normalize_symbol("foo.isra.0.cold") == "foo"
    assert normalize_symbol("operator new(unsigned long)") == "operator new(unsigned long)"
    assert match_key((Frame("0x7f52eed60930"), Frame("0x7f52eed60a00"))) == (
        "[unresolved 0x7f52eed60930]",
        "[unresolved 0x7f52eed60a00]",
    )
    assert match_key(()) == ("[no stack]",)


def _with_findings(inv: Investigation, findings: tuple[Finding, ...]) -> Investigation:
    return replace(inv, findings=findings)


def test_two_call_sites_in_one_function_merge() -> None:
    before = load(1)
    leak = before.findings[0]
    other_site = replace(
        leak,
        rank=9,
        verdict="plateau",
        stack=Stack((replace(leak.stack.frames[0], offset=0x99, address=1), *leak.stack.frames[1:])),
    )
    after = _with_findings(load(2), (leak, other_site))
    result = diff_investigations(before, after)
    entry = next(e for e in result.entries if e.title == leak.stack.top)
    assert entry.after is not None
    assert entry.after.merged == 2
    assert entry.after.verdict == "leak"  # the most leak-like verdict wins
    assert entry.after.outstanding_bytes == 2 * leak.outstanding_bytes


def test_warnings_when_after_cannot_show_a_leak() -> None:
    before = load(1)
    after = replace(
        load(3),
        run=replace(load(3).run, duration_s=3.0, stop_reason="target-exited"),
        snapshots=tuple(replace(s, truncated=True, top_n=1) for s in load(3).snapshots[:2]),
        target=replace(load(3).target, comm="other"),
    )
    warnings = " | ".join(diff_investigations(before, after).warnings)
    assert "AFTER ran 3 s, BEFORE 12 s" in warnings
    assert "2 snapshot(s)" in warnings
    assert "stopped early (target-exited)" in warnings
    assert "'fixleak' and AFTER 'other'" in warnings
    assert "top 1 stacks" in warnings


def test_unresolved_leaks_are_flagged_but_unresolved_noise_is_not() -> None:
    before = load(1)
    leak = before.findings[0]
    hexed = replace(leak, stack=Stack((Frame("0x55b4678f9e89"), Frame("0x55b4678f9f00"))))
    small = replace(hexed, verdict="stable", stack=Stack((Frame("0x55b4678f0000"),)))
    noisy = diff_investigations(replace(before, findings=(*before.findings, small)), before)
    assert not any("no function names" in w for w in noisy.warnings)
    flagged = diff_investigations(before, replace(before, findings=(*before.findings, hexed)))
    assert any("1 leaking stack had no function names" in w for w in flagged.warnings)
    assert "[unresolved 0x55b4678f9e89]" in {e.title for e in flagged.new}


def test_a_scan_cannot_be_diffed() -> None:
    scan = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=1),
        interval_s=1,
        processes=(),
        sampled=0,
        unreadable=0,
    )
    with pytest.raises(UsageError, match="scan report; diff compares two investigations"):
        require_investigation(scan, "s.json")


@pytest.mark.parametrize("fmt", ["text", "md", "html", "json"])
def test_every_format_names_the_changes(fmt: str) -> None:
    result = diff_investigations(load(1), load(2), before_source="v1.json", after_source="v2.json")
    out = io.StringIO()
    render_diff(result, fmt, out)
    text = out.getvalue()
    for name in ("parse_request", "open_session", "log_request", "v1.json", "v2.json"):
        assert name in text
    if fmt == "json":
        data = json.loads(text)
        assert data["kind"] == "diff" and data["exit_code"] == 1
        assert data["counts"] == {"new": 1, "still": 1, "fixed": 1, "other": 1}
        new = data["entries"][0]
        assert new["status"] == "new" and new["before"] is None and new["after"]["verdict"] == "leak"


def test_hostile_names_are_escaped() -> None:
    evil = "<img src=x onerror=alert(1)>"
    before = load(1)
    leak = before.findings[0]
    bad = replace(leak, stack=Stack((Frame(evil, 1, "x|y"), *leak.stack.frames[1:])))
    after = replace(load(2), findings=(bad,), target=replace(load(2).target, comm=evil))
    result = diff_investigations(before, after, after_source=evil)
    html, md = io.StringIO(), io.StringIO()
    render_diff(result, "html", html)
    render_diff(result, "md", md)
    assert evil not in html.getvalue()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html.getvalue()
    # In Markdown the name may appear only inside code spans or fences, where it is inert text.
    outside_code = re.sub(r"(`+).*?\1", "", re.sub(r"(?ms)^(`{3,}).*?^\1", "", md.getvalue()))
    assert re.search(r"(?<!\\)<img", outside_code) is None  # backslash-escaped or absent
    assert "&lt;img" in md.getvalue()  # the <summary> of a collapsed stack is HTML-escaped
    # And as GitHub would render it (CommonMark with raw HTML allowed, GFM tables): no <img> element.
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(md.getvalue())
    assert "<img" not in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert 'http-equiv="Content-Security-Policy"' in html.getvalue()


def test_terminal_summary_shows_control_characters_escaped() -> None:
    before = load(1)
    leak = before.findings[0]
    bad = replace(leak, stack=Stack((Frame("x\x1b[2J\x1b]0;pwned\x07", 1, "m"), *leak.stack.frames[1:])))
    after = replace(load(2), findings=(bad,), target=replace(load(2).target, comm="a\x1bb"))
    out = io.StringIO()
    render_diff(diff_investigations(before, after), "text", out)
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "x\\x1b[2J" in out.getvalue()


def test_empty_runs() -> None:
    empty = replace(load(3), findings=(), snapshots=(Snapshot(0.0, ()), Snapshot(1.0, ())))
    result = diff_investigations(empty, empty)
    assert result.entries == ()
    assert result.exit_code() == 0
    assert result.verdict() == "No stack leaks in either run."


def test_a_run_without_data_is_an_error_not_a_fix() -> None:
    crashed = replace(load(3), findings=(), snapshots=(Snapshot(0.0, ()),))
    with pytest.raises(UsageError, match=r"AFTER \(after.json\) holds 1 snapshot"):
        diff_investigations(load(1), crashed, after_source="after.json")
    with pytest.raises(UsageError, match="BEFORE"):
        diff_investigations(replace(crashed, snapshots=()), load(1))
