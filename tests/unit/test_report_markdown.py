"""Markdown reports render as intended on GitHub/GitLab, whatever the target's text contains.

The Markdown is rendered with markdown-it-py (CommonMark + GFM tables, raw HTML allowed as GitHub
allows it) and the resulting HTML is inspected: hostile text must come out as text.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from leakhunt.model import Frame, Investigation, Stack
from leakhunt.report import jsonio, render_bytes
from leakhunt.report.markdown import cell, code, code_cell, fence, md

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "investigation-bcc-memleak.json"
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    '"><script>alert(1)</script>',
    "a|b|c",
    "``` not a fence",
    "*bold* _it_ [link](http://x) ![i](http://x/i.png)",
    "&lt;b&gt; &amp;",
    "</details><script>alert(2)</script>",
    "line\nbreak",
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _html(markdown: str) -> _Tags:
    out = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    parser = _Tags()
    parser.feed(out)
    return parser


@pytest.mark.parametrize("text", HOSTILE)
def test_inline_filters_keep_text_literal(text: str) -> None:
    flat = " ".join(text.splitlines())
    for rendered in (md(text), code(text)):
        tags = _html(f"before {rendered} after")
        assert set(tags.tags) <= {"p", "code"}, (rendered, tags.tags)
        assert flat in "".join(tags.text)
    table = _html(f"| a | b |\n|---|---|\n| {cell(text)} | {code_cell(text)} |\n")
    assert table.tags.count("td") == 2
    # a | in the text never splits the cell: both cells hold the whole text
    assert "".join(table.text).count(flat) == 2
    assert not {"img", "script", "a"} & set(table.tags)


@pytest.mark.parametrize("text", HOSTILE)
def test_fence_keeps_text_literal(text: str) -> None:
    tags = _html(fence(text) + "\n\nafter\n")
    assert tags.tags == ["pre", "code", "p"]
    assert text in "".join(tags.text)


@given(st.text(max_size=40))
def test_md_and_code_never_produce_markup(text: str) -> None:
    for rendered in (md(text), code(text)):
        tags = _html(f"x {rendered} y")
        assert not {"img", "script", "a", "em", "strong", "del"} & set(tags.tags)
        assert not any(a.startswith("on") for a in tags.attrs)


def test_hostile_target_report_renders_as_text() -> None:
    doc = jsonio.load(FIXTURE)
    assert isinstance(doc, Investigation)
    bad_frame = Frame("<img src=x onerror=alert(1)>", 1, '"><script>alert(1)</script>')
    f0 = doc.findings[0]
    f0 = dataclasses.replace(f0, stack=Stack((bad_frame, *f0.stack.frames)), reason="</details><b>x</b>")
    hostile = dataclasses.replace(
        doc,
        target=dataclasses.replace(
            doc.target,
            comm="<img src=x onerror=alert(1)>",
            cmdline=("./x", '"><script>alert(1)</script>', "a|b"),
        ),
        findings=(f0, *doc.findings[1:]),
        quality=dataclasses.replace(doc.quality, notes=("<script>alert(3)</script>",)),
    )
    text = render_bytes(hostile, "md").decode()
    tags = _html(text)
    assert not {"img", "script", "b"} & set(tags.tags)
    assert not any(a.startswith("on") for a in tags.attrs)
    # the target can neither open nor close a <details>: as many as in the same report of a tame target
    assert tags.tags.count("details") == _html(render_bytes(doc, "md").decode()).tags.count("details") >= 3
    shown = "".join(tags.text)
    assert "<img src=x onerror=alert(1)>" in shown and '"><script>alert(1)</script>' in shown
