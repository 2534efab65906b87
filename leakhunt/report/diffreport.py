"""Reports of ``leakhunt diff``: did the fix work? In text (terminal), Markdown, HTML and JSON.

The HTML shares the investigation report's page (``report/partials/base.html.j2``: inline CSS, a
Content-Security-Policy that forbids every request) and autoescapes everything; the Markdown uses
the investigation report's escaping filters (``report.markdown``). The JSON is::

    {"schema_version": 2, "kind": "diff", "verdict": "Not fixed: ...", "exit_code": 1,
     "fail_on": "any", "counts": {"new": 1, "still": 1, "fixed": 1, "other": 1},
     "before": {"source": "v1.json", "comm": "fixleak", "pid": 10523, ...}, "after": {...},
     "entries": [{"status": "new", "key": ["log_request", "handle", "main"],
                  "frames": ["log_request+0x16 [fixleak]", ...],
                  "before": null, "after": {"verdict": "leak", "growth_bytes_per_sec": 128.0, ...}}],
     "warnings": []}
"""

from __future__ import annotations

from dataclasses import asdict

from leakhunt.analyze.diff import STATUS_ORDER, DiffEntry, DiffResult, FailOn, Side
from leakhunt.model import SCHEMA_VERSION
from leakhunt.report import html, markdown, views
from leakhunt.report.safetext import neutralize
from leakhunt.templating import html_env

STATUS_WORDS: dict[str, str] = {
    "new": "new leak",
    "still": "still leaking",
    "fixed": "stopped leaking",
    "other": "not leaking in either run",
}


def term(text: str) -> str:
    """Text safe for a terminal: control characters (escape sequences) shown as ``\\xNN``."""
    return neutralize(text)


def side_text(side: Side | None) -> str:
    """``leak, 12.0 KiB/s, 1.2 MiB held`` or ``absent``."""
    if side is None:
        return "absent"
    return (
        f"{side.verdict}, {views.human_rate(side.growth_bytes_per_sec)}, "
        f"{views.human_bytes(side.outstanding_bytes)} held"
    )


def to_dict(result: DiffResult, fail_on: FailOn = "any") -> dict[str, object]:
    """The JSON form of a diff (see the module docstring)."""

    def entry(e: DiffEntry) -> dict[str, object]:
        return {
            "status": e.status,
            "key": list(e.key),
            "frames": list(e.frames),
            "before": asdict(e.before) if e.before else None,
            "after": asdict(e.after) if e.after else None,
        }

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "diff",
        "verdict": result.verdict(),
        "exit_code": result.exit_code(fail_on),
        "fail_on": fail_on,
        "counts": {s: len(result.by_status(s)) for s in STATUS_ORDER},
        "before": asdict(result.before),
        "after": asdict(result.after),
        "entries": [entry(e) for e in result.entries],
        "warnings": list(result.warnings),
    }


def render_text(result: DiffResult, fail_on: FailOn = "any") -> str:
    """The terminal summary: verdict, each changed stack in one line, warnings, exit code."""
    lines = [result.verdict()]
    b, a = result.before, result.after
    for name, run in (("BEFORE", b), ("AFTER ", a)):
        lines.append(
            f"  {name} {term(run.source)}: {term(run.comm)} (pid {run.pid}), "
            f"{views.human_duration(run.duration_s)}, {run.leaks} leak(s)"
        )
    for status in ("new", "still", "fixed"):
        entries = result.by_status(status)
        if not entries:
            continue
        lines.append(f"{STATUS_WORDS[status]} ({len(entries)}):")
        for e in entries:
            chain = term(" <- ".join(e.key[:4]) + (" <- ..." if len(e.key) > 4 else ""))
            lines.append(f"  {chain}")
            lines.append(f"      before: {side_text(e.before)}; after: {side_text(e.after)}")
    for w in result.warnings:
        lines.append(f"warning: {term(w)}")
    code = result.exit_code(fail_on)
    lines.append(f"exit status {code} (--fail-on {fail_on})")
    return "\n".join(lines) + "\n"


def render_md(result: DiffResult, fail_on: FailOn = "any") -> str:
    """The Markdown diff report (templates/report/diff.md.j2)."""
    template = markdown.environment().get_template("report/diff.md.j2")
    return neutralize(template.render(**_context(result, fail_on)))


def render_html(result: DiffResult, fail_on: FailOn = "any") -> str:
    """The self-contained HTML diff report (templates/report/diff.html.j2, autoescaped)."""
    b, a = result.before, result.after
    ctx = html.page_context(f"leakhunt diff: {b.comm} {b.source} -> {a.comm} {a.source}")
    ctx.update(_context(result, fail_on))
    return html_env().get_template("report/diff.html.j2").render(**ctx)


def _context(result: DiffResult, fail_on: FailOn) -> dict[str, object]:
    return {
        "diff": result,
        "fail_on": fail_on,
        "exit_code": result.exit_code(fail_on),
        "groups": [(s, STATUS_WORDS[s], result.by_status(s)) for s in STATUS_ORDER],
        "side_text": side_text,
        "human_bytes": views.human_bytes,
        "human_rate": views.human_rate,
        "human_duration": views.human_duration,
    }
