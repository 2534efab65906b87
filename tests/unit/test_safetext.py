"""Control characters from the target (comm, command line, symbols, notes) never reach a terminal or
a text report raw (issue 13, item 12): an ``ESC ] 0 ;`` retitles the terminal, ``ESC [ 2 J``
clears it, U+202E reverses what follows."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table

from leakhunt.analyze.diff import diff_investigations
from leakhunt.cli.common import SafeConsole
from leakhunt.model import Investigation, TraceResult
from leakhunt.report import jsonio, render, render_bytes
from leakhunt.report.safetext import escape_json_text, neutralize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOOD = FIXTURES / "reports" / "investigation-bpftrace.json"
TRACE = FIXTURES / "exports" / "trace-bcc-0.26.json"

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eexe.txt\r"
# what may not appear in any text output: C0 controls but tab and newline, DEL, C1, bidi overrides
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _poison(data: Any) -> Any:
    """Every comm, command line, frame text, symbol and note of a JSON report made hostile."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("comm", "symbol", "reason") and isinstance(value, str):
                out[key] = value + HOSTILE
            elif key in ("cmdline", "frames", "notes", "argv") and isinstance(value, list):
                out[key] = [f"{v}{HOSTILE}" if isinstance(v, str) else _poison(v) for v in value]
            else:
                out[key] = _poison(value)
        return out
    if isinstance(data, list):
        return [_poison(v) for v in data]
    return data


def hostile(path: Path) -> Investigation | TraceResult:
    doc = jsonio.from_dict(_poison(json.loads(path.read_text())))
    assert isinstance(doc, Investigation | TraceResult)
    return doc


def test_neutralize_shows_what_it_replaced() -> None:
    assert neutralize("a\x1b[31mb\tc\nd\x9b\u202e") == "a\\x1b[31mb\tc\nd\\x9b\\u202e"
    assert neutralize("plain ünïcode 漢字") == "plain ünïcode 漢字"


def test_json_text_escapes_del_c1_and_bidi_and_leaves_the_rest() -> None:
    assert escape_json_text('{"a": "x\x7fy"}') == '{"a": "x\\u007fy"}'  # (ASCII, DEL in it)
    assert escape_json_text('"\x9b\u202e\u00e9"') == '"\\u009b\\u202e\u00e9"'
    plain = '{"a": "plain ASCII, \\u001b already escaped by json"}'
    assert escape_json_text(plain) is plain


@pytest.mark.parametrize("fmt", ["md", "folded", "json"])
@pytest.mark.parametrize("source", [GOOD, TRACE], ids=["investigation", "trace"])
def test_text_reports_hold_no_control_characters(source: Path, fmt: str) -> None:
    doc = hostile(source)
    text = render_bytes(doc, fmt).decode("utf-8")
    assert "pwned" in text or fmt == "folded"  # the hostile text is there, made harmless
    assert not UNSAFE.search(text), UNSAFE.findall(text)[:5]
    if fmt == "json":
        assert jsonio.loads(text) == doc  # escaping keeps the data


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_diff_outputs_hold_no_control_characters(fmt: str) -> None:
    doc = hostile(GOOD)
    assert isinstance(doc, Investigation)
    result = diff_investigations(doc, doc, before_source=f"a{HOSTILE}.json", after_source="b.json")
    buf = io.StringIO()
    render(result, fmt, buf)
    assert not UNSAFE.search(buf.getvalue())


def test_terminal_console_neutralizes_every_renderable() -> None:
    """Strings, markup-free prints and table cells alike; rich's own styling stays."""
    buf = io.StringIO()
    console = SafeConsole(file=buf, force_terminal=True, color_system="standard", width=200)
    table = Table("stack")
    table.add_row(f"leaky_alloc{HOSTILE}")
    console.print(f"[bold]{HOSTILE}[/bold]")
    console.print(f"comm {HOSTILE}", markup=False)
    console.print(table)
    out = buf.getvalue()
    assert "pwned" in out
    without_styles = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's SGR colour codes are ours
    assert not UNSAFE.search(without_styles), UNSAFE.findall(without_styles)
