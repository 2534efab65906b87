"""The renderer registry is the one place that names the formats: the commands' --format choices,
file endings and the format a file name says all come from it; every report file is written by
the one atomic writer."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from leakhunt.analyze.diff import diff_investigations
from leakhunt.cli import cli
from leakhunt.errors import UsageError
from leakhunt.model import Investigation, ScanResult, TraceResult
from leakhunt.report import (
    DIFF_FORMATS,
    EXTENSIONS,
    FORMATS,
    formats_for,
    jsonio,
    render,
    render_bytes,
    write_rendered,
    write_reports,
)
from leakhunt.report.renderers import DIFF_RENDERERS, RENDERERS, format_of_name

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _inv() -> Investigation:
    doc = jsonio.load(FIXTURES / "reports" / "investigation-bpftrace.json")
    assert isinstance(doc, Investigation)
    return doc


def test_the_registry_names_every_format_once() -> None:
    assert FORMATS == ("html", "md", "json", "folded", "pprof")
    assert DIFF_FORMATS == ("text", "html", "md", "json")
    for table in (RENDERERS, DIFF_RENDERERS):
        for name, renderer in table.items():
            assert renderer.name == name
            assert renderer.extension.startswith(".")
    assert [n for n, r in RENDERERS.items() if r.binary] == ["pprof"]
    assert EXTENSIONS["pprof"] == ".pb.gz"
    assert formats_for(ScanResult) == ("html", "md", "json")
    assert formats_for(TraceResult) == FORMATS


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("leak.pb.gz", "pprof"),
        ("leak.pprof", "pprof"),
        ("LEAK.HTM", "html"),
        ("a.markdown", "md"),
        ("a.collapsed", "folded"),
        ("a.json", "json"),
        ("a.gz", None),
        ("a.txt", None),
    ],
)
def test_a_file_name_says_its_format(name: str, fmt: str | None) -> None:
    assert format_of_name(name, RENDERERS) == fmt


def test_diff_formats_have_their_own_endings() -> None:
    assert format_of_name("d.txt", DIFF_RENDERERS) == "text"
    assert format_of_name("d.pb.gz", DIFF_RENDERERS) is None


def test_the_commands_offer_the_registry_formats() -> None:
    runner = CliRunner()
    for command in ("investigate", "run", "trace", "import", "report"):
        text = runner.invoke(cli, [command, "--help"], terminal_width=200).output
        assert f"Report formats to write, comma-separated: {', '.join(FORMATS)}." in text, command
    scan_help = runner.invoke(cli, ["scan", "--help"], terminal_width=200).output
    assert "Report formats, comma-separated: html, md, json." in scan_help
    diff_help = runner.invoke(cli, ["diff", "--help"], terminal_width=200).output
    assert "comma-separated: text, html, md, json." in diff_help


def test_render_to_a_stream_equals_the_bytes() -> None:
    inv = _inv()
    for fmt in FORMATS:
        data = render_bytes(inv, fmt)
        if RENDERERS[fmt].binary:
            raw = io.BytesIO()
            render(inv, fmt, raw)
            assert raw.getvalue() == data
            with pytest.raises(UsageError, match="binary"):
                render(inv, fmt, io.StringIO())
        else:
            text = io.StringIO()
            render(inv, fmt, text)
            assert text.getvalue().encode() == data
    count = render_bytes(inv, "folded", value="count")
    assert count != render_bytes(inv, "folded")  # the renderer's own option reaches it


def test_a_diff_is_rendered_through_the_same_registry() -> None:
    inv = _inv()
    result = diff_investigations(inv, inv)
    assert render_bytes(result, "text", fail_on="never") != render_bytes(result, "text")
    with pytest.raises(UsageError, match="unknown diff format"):
        render_bytes(result, "pprof")


def test_report_files_are_written_atomically_and_private(tmp_path: Path) -> None:
    planted = tmp_path / "elsewhere"
    planted.write_text("keep")
    stem = "leakhunt-x"
    (tmp_path / f"{stem}.md").symlink_to(planted)  # replaced, never written through
    paths = write_reports(_inv(), tmp_path, ("md", "json"), stem=stem)
    assert [p.name for p in paths] == [f"{stem}.md", f"{stem}.json"]
    for p in paths:
        mode = os.lstat(p).st_mode
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert planted.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", f"{stem}.json", f"{stem}.md"]
    with pytest.raises(UsageError, match="bad report name"):
        write_rendered(tmp_path, "../x", [(".md", b"")])
