"""Markdown reports of investigations and traces, for GitHub/GitLab issues and merge requests.

Layout: the verdict and the top findings with their stacks in fenced code blocks first, then
everything else (all stacks, data quality, run details) folded in ``<details>`` blocks.

Markdown has no autoescaping, so every value from the target goes through one of the filters
below: ``md`` for running text (backslash-escapes the punctuation Markdown or HTML would act on),
``cell`` for table cells (also escapes ``|`` and line breaks), ``code`` for inline code (a fence
longer than any backtick run in the text), ``fence`` for code blocks, ``html`` inside the HTML bits
(``<summary>``).
"""

from __future__ import annotations

import re
from functools import cache

import jinja2
from markupsafe import escape

from leakhunt.model import Investigation, ScanResult, TraceResult
from leakhunt.report import views
from leakhunt.report.safetext import neutralize
from leakhunt.templating import text_env

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones that
# open or close inline syntax, HTML, entities or table cells anywhere in a line. Line-start syntax
# (#, -, 1.) cannot occur: the templates never start a line with a value.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
_BACKTICKS = re.compile(r"`+")


def md(text: object) -> str:
    """Running text: Markdown and HTML syntax characters escaped, line breaks kept as spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


def cell(text: object) -> str:
    """A table cell: like ``md`` (which also escapes ``|``, so the cell cannot split)."""
    return md(text)


def code(text: object, *, in_table: bool = False) -> str:
    """Inline code that survives backticks in the text (and ``|`` in a table cell)."""
    s = " ".join(str(text).splitlines())
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    out = f"{ticks}{pad}{s}{pad}{ticks}"
    # GFM splits table cells on | even inside code spans unless it is escaped.
    return out.replace("|", "\\|") if in_table else out


def code_cell(text: object) -> str:
    return code(text, in_table=True)


def fence(text: object, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside it."""
    s = str(text)
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{lang}\n{s}\n{bar}"


def html(text: object) -> str:
    """Text inside an HTML element of the Markdown (``<summary>``)."""
    return str(escape(" ".join(str(text).splitlines())))


@cache
def environment() -> jinja2.Environment:
    """The Markdown environment: ``text_env`` plus the escaping filters (md, cell, code, code_cell,
    fence, html). Every Markdown template (scan and diff reports too) renders through it."""
    # An overlay with its own filter table: the shared text environment (probe scripts) is untouched.
    env = text_env().overlay()
    env.filters = {
        **env.filters,
        "md": md,
        "cell": cell,
        "code": code,
        "code_cell": code_cell,
        "fence": fence,
        "html": html,
    }
    return env


_env = environment  # the name the first scan/diff renderers used


def render_investigation(inv: Investigation) -> str:
    """The Markdown report of an investigation."""
    truncated = sum(1 for s in inv.snapshots if s.truncated)
    found = views.leaks(inv)
    ctx: dict[str, object] = {
        "inv": inv,
        "verdict": views.verdict_sentence(inv),
        "mode_note": views.mode_note(inv),
        "leaks": found[:3],
        "rows": views.rows(inv),
        "snapshots": views.snapshot_rows(inv),
        "reproduce": views.reproduce_command(inv, "run" if inv.target.launched else "investigate"),
        "stop": views.stop_text(inv.run, inv.target),
        "quality": views.quality_lines(
            inv.quality, snapshots=len(inv.snapshots), truncated_snapshots=truncated
        ),
        "top_frame": views.top_frame,
        "stack_text": lambda f: "\n".join(fr.display() for fr in f.stack.frames) or "[no stack]",
        "human_bytes": views.human_bytes,
        "human_rate": views.human_rate,
        "human_duration": views.human_duration,
        "allocator_text": views.allocator_text,
    }
    return neutralize(environment().get_template("report/investigation.md.j2").render(ctx))


def render_trace(tr: TraceResult) -> str:
    """The Markdown report of a per-call trace."""
    by_size, by_thread = views.unfreed_groups(tr)
    ctx: dict[str, object] = {
        "tr": tr,
        "processes": sorted(tr.processes, key=lambda p: -p.unfreed_bytes),
        "unfreed": views.largest_unfreed(tr, 50),
        "by_size": by_size[:20],
        "by_thread": by_thread[:20],
        "unfreed_total": sum(p.unfreed_count for p in tr.processes),
        "stop": views.stop_text(tr.run, tr.target),
        "reproduce": views.reproduce_command(tr, "trace"),
        "quality": views.quality_lines(tr.quality, snapshots=0, truncated_snapshots=0)[:7],
        "human_bytes": views.human_bytes,
        "human_duration": views.human_duration,
        "allocator_text": views.allocator_text,
    }
    return neutralize(environment().get_template("report/trace.md.j2").render(ctx))


def render_md(doc: Investigation | TraceResult | ScanResult) -> str:
    """Markdown of an investigation or trace (scans are rendered by ``report.scan``)."""
    if isinstance(doc, Investigation):
        return render_investigation(doc)
    if isinstance(doc, TraceResult):
        return render_trace(doc)
    raise TypeError("scans are rendered by leakhunt.report.scan.render_md")
