"""``leakhunt report``: re-render a saved report; ``leakhunt diff``: compare two investigations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import click

from leakhunt.analyze.diff import FAIL_ON, FailOn, diff_investigations, require_investigation
from leakhunt.cli.common import announce, output_options
from leakhunt.errors import UsageError
from leakhunt.outputfile import STDOUT, write_output
from leakhunt.report import (
    DIFF_FORMATS,
    EXTENSIONS,
    default_stem,
    jsonio,
    render_bytes,
    write_rendered,
)
from leakhunt.report import folded as folded_mod
from leakhunt.report.redact import redact as redact_doc
from leakhunt.report.renderers import DIFF_RENDERERS, RENDERERS, Renderer, format_of_name


def _emit(data: bytes, output: str) -> None:
    """Write to ``-`` (stdout), a device or FIFO (streamed into) or a file (replaced atomically)."""
    write_output(output, data)
    if output != STDOUT:
        click.echo(f"report: {output}", err=True)


def _resolve_formats(
    ctx: click.Context,
    formats: tuple[str, ...],
    output: str | None,
    renderers: Mapping[str, Renderer[Any]],
    default: str,
) -> tuple[str, ...]:
    """``--format`` as given; else, with ``-o FILE``, the format its name says; else the default."""
    explicit = ctx.get_parameter_source("formats") == click.core.ParameterSource.COMMANDLINE
    if output is not None:
        if not explicit:
            guessed = format_of_name(output, renderers) if output != "-" else None
            formats = (guessed or default,)
        if len(formats) != 1:
            raise UsageError(
                f"-o writes one file but {len(formats)} formats were asked for ({', '.join(formats)})",
                hint="give one --format with -o, or use --output-dir for several",
            )
    return formats


REPORT_HELP = """Re-render a saved report (investigation, scan or trace JSON) in other formats.

\b
FILE is a JSON report written by investigate, run, scan, trace or import (`-` reads stdin).
Formats:
  html    one self-contained page (charts, flame graphs, tables), opens offline
  md      Markdown for GitHub/GitLab issues
  json    the versioned JSON document itself (schema: leakhunt/report/SCHEMA.md)
  folded  folded stacks `frame;frame;frame VALUE` (outermost first) for flamegraph.pl,
          inferno and speedscope; VALUE is chosen with --value
  pprof   gzipped profile.proto (.pb.gz) with inuse_space, inuse_objects and growth_space
          for `go tool pprof`, speedscope, Pyroscope and Parca
folded and pprof need call stacks: investigations and traces, not scans.

\b
Examples:
  leakhunt report reports/leakhunt-investigation-app-42-20261125-091051.json
  leakhunt report run.json --format md -o -                    # Markdown to stdout
  leakhunt report run.json -o leak.pb.gz && go tool pprof -top leak.pb.gz
  leakhunt report run.json --format folded --value growth -o growth.folded
"""


@click.command("report", help=REPORT_HELP)
@click.argument("file", metavar="FILE")
@output_options(default="html")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write one format to FILE instead of --output-dir (`-` = stdout). Without --format, the "
    "file name's ending decides (.html, .md, .json, .folded, .pb.gz).",
)
@click.option(
    "--value",
    type=click.Choice(folded_mod.VALUES),
    default="bytes",
    show_default=True,
    help="The number on each folded line: bytes outstanding when last seen, growth (bytes gained "
    "during the run), or count (allocations outstanding).",
)
@click.pass_context
def report(
    ctx: click.Context,
    *,
    file: str,
    formats: tuple[str, ...],
    output_dir: Path,
    output: str | None,
    value: str,
    no_redact: bool,
) -> None:
    """Load FILE, redact it unless asked not to, render every format, then write the files."""
    doc = jsonio.load(file)
    formats = _resolve_formats(ctx, formats, output, RENDERERS, "html")
    if not no_redact:
        doc = redact_doc(doc)
    # Render everything first: a format that does not apply fails before any file is written.
    rendered = [(EXTENSIONS[fmt], render_bytes(doc, fmt, value=value)) for fmt in formats]
    if output is not None:
        _emit(rendered[0][1], output)
        return
    paths = write_rendered(output_dir, default_stem(doc), rendered)
    announce(paths, output_dir, lambda line: click.echo(line, err=True))


def _diff_formats(ctx: click.Context, param: click.Parameter, value: object) -> tuple[str, ...]:
    """``"html,md"`` -> ("html", "md"), checked against the diff formats (text, html, md, json)."""
    if isinstance(value, tuple):
        return value
    out: list[str] = []
    for part in str(value).split(","):
        fmt = part.strip().lower()
        fmt = "md" if fmt == "markdown" else fmt
        if fmt and fmt not in DIFF_FORMATS:
            raise click.BadParameter(
                f"unknown diff format {part.strip()!r}; choose among {', '.join(DIFF_FORMATS)}", ctx, param
            )
        if fmt and fmt not in out:
            out.append(fmt)
    if not out:
        raise click.BadParameter(f"no format given; choose among {', '.join(DIFF_FORMATS)}", ctx, param)
    return tuple(out)


DIFF_HELP = """Compare two investigations of one program, BEFORE and AFTER a change: did the fix work?

\b
Each stack that leaks in either run is reported as
  new      leaks AFTER, did not leak BEFORE
  still    leaks in both runs
  fixed    leaked BEFORE, no longer leaks AFTER (gone, or plateau/transient/stable)
Stacks are matched by function names, innermost first. Offsets, addresses and module names are
ignored (they change with every rebuild and run), and so are compiler clone suffixes
(foo.constprop.0) and the C runtime's start frames. Warnings say when the comparison is weak
(AFTER much shorter, too few snapshots, lost events, truncated top-N output).

\b
Exit status (for CI):
  0  no stack leaks AFTER (with --fail-on new: no new leak; with --fail-on never: always)
  1  a stack leaks AFTER: new or still (with --fail-on new: only new leaks count)
  2  bad input (unreadable JSON, not an investigation, a run with fewer than 2 snapshots,
     bad options): "no data" never passes as "fixed"

\b
The summary goes to stdout (stderr when -o - writes the report there). Examples:
  leakhunt diff before.json after.json                 # summary + exit status
  leakhunt diff before.json after.json --format html,md --output-dir reports/
  leakhunt diff before.json after.json -o diff.md --fail-on new

\b
A differential profile of the two runs, per function, with pprof:
  leakhunt report before.json -o before.pb.gz; leakhunt report after.json -o after.pb.gz
  go tool pprof -top -sample_index=growth_space -diff_base before.pb.gz after.pb.gz
"""


@click.command("diff", help=DIFF_HELP)
@click.argument("before", metavar="BEFORE.json")
@click.argument("after", metavar="AFTER.json")
@click.option(
    "--format",
    "formats",
    metavar="FORMATS",
    callback=_diff_formats,
    default="text",
    show_default=True,
    help=f"Formats of the diff report, comma-separated: {', '.join(DIFF_FORMATS)}. Files are written only "
    "with --output-dir or -o (with -o and no --format, the file name's ending decides).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the diff reports here (created if missing), named after AFTER: "
    "leakhunt-diff-<comm>-<pid>-<time>.<ext>.",
)
@click.option("-o", "--output", metavar="FILE", help="Write one format to FILE (`-` = stdout).")
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="any",
    show_default=True,
    help="What makes the exit status 1: any leak AFTER (new or still), only new leaks, or never.",
)
@click.pass_context
def diff(
    ctx: click.Context,
    *,
    before: str,
    after: str,
    formats: tuple[str, ...],
    output_dir: Path | None,
    output: str | None,
    fail_on: str,
) -> None:
    """Compare BEFORE and AFTER, print the summary, write the reports asked for, exit 0 or 1."""
    if output is not None and output_dir is not None:
        raise UsageError("-o and --output-dir exclude each other", hint="give one of them")
    fail = cast(FailOn, fail_on)
    before_doc = require_investigation(jsonio.load(before), before)
    after_doc = require_investigation(jsonio.load(after), after)
    result = diff_investigations(
        before_doc,
        after_doc,
        before_source=os.path.basename(before) or before,
        after_source=os.path.basename(after) or after,
    )
    formats = _resolve_formats(ctx, formats, output, DIFF_RENDERERS, "text")
    summary_to_stderr = output == "-"
    if output is None and output_dir is None:
        # Only the summary was asked for, in whichever formats: print each to stdout.
        for fmt in formats:
            click.echo(render_bytes(result, fmt, fail_on=fail).decode("utf-8"), nl=False)
        ctx.exit(result.exit_code(fail))
    click.echo(render_bytes(result, "text", fail_on=fail).decode("utf-8"), nl=False, err=summary_to_stderr)
    rendered = [(DIFF_RENDERERS[fmt].extension, render_bytes(result, fmt, fail_on=fail)) for fmt in formats]
    if output is not None:
        _emit(rendered[0][1], output)
    else:
        assert output_dir is not None
        stem = f"leakhunt-diff-{default_stem(after_doc).removeprefix('leakhunt-investigation-')}"
        paths = write_rendered(output_dir, stem, rendered)
        announce(paths, output_dir, lambda line: click.echo(line, err=True))
    ctx.exit(result.exit_code(fail))
