"""The shared output options (--output-dir, --format, --no-redact) as a user meets them."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from leakhunt.cli.common import output_options, write_and_announce
from leakhunt.model import Investigation
from leakhunt.report import FORMATS, jsonio

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "investigation-bpftrace.json"


def _command(allowed: tuple[str, ...] = FORMATS) -> click.Command:
    @click.command()
    @output_options(allowed=allowed)
    def cmd(output_dir: Path, formats: tuple[str, ...], no_redact: bool) -> None:
        doc = jsonio.load(FIXTURE)
        assert isinstance(doc, Investigation)
        doc = dataclasses.replace(
            doc, target=dataclasses.replace(doc.target, cmdline=("app", "--token", "T0K"))
        )
        write_and_announce(doc, output_dir, formats, redact=not no_redact, echo=click.echo)

    return cmd


def test_defaults_write_html_md_json_into_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(_command(), [])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "reports").iterdir())
    assert [p.suffix for p in written] == [".html", ".json", ".md"]
    for p in written:
        assert f"report: reports/{p.name}" in result.output
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert "T0K" not in p.read_text()


def test_format_list_and_no_redact(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _command(), ["--format", "json, folded", "--output-dir", str(tmp_path), "--no-redact"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".folded", ".json"]
    assert "T0K" in next(tmp_path.glob("*.json")).read_text()


def test_bad_format_is_a_usage_error_before_anything_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(_command(), ["--format", "html,docx", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        "unknown report format 'docx'" in result.output and "html, md, json, folded, pprof" in result.output
    )
    assert not list(tmp_path.iterdir())


def test_commands_can_restrict_formats() -> None:
    result = CliRunner().invoke(_command(("html", "md", "json")), ["--format", "pprof"])
    assert result.exit_code == 2
    assert "format 'pprof' is not available here; choose among html, md, json" in result.output
    help_text = CliRunner().invoke(_command(("html", "md", "json")), ["--help"]).output
    assert "--output-dir" in help_text and "--no-redact" in help_text
    assert "comma-separated: html, md, json." in " ".join(help_text.split())
