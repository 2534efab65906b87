"""Self-contained HTML reports of investigations and traces (scans: ``report.scan``).

One file with everything inline (CSS, SVG charts, a small script for sorting and hover), so it
opens offline from a ticket attachment. A Content-Security-Policy meta tag forbids every network
request and every script except the report's own (allowed by its SHA-256), so even text that got
past escaping could neither run nor phone home. Everything from the target goes through the
autoescaping jinja environment (``templating.html_env``); only SVG built here, which escapes its
own inputs, and the static CSS/JS assets are marked safe.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from markupsafe import Markup

from leakhunt import __version__
from leakhunt.model import VERDICT_ORDER, Investigation, ScanResult, TraceResult
from leakhunt.report import flame, views
from leakhunt.report.svg import Series, format_value, line_chart, sparkline
from leakhunt.templating import html_env, templates_dir

TOP_SERIES = 8  # stacks drawn in the outstanding-bytes chart


@cache
def _asset(name: str) -> str:
    return (templates_dir() / "report" / "partials" / name).read_text(encoding="utf-8")


def csp(script: str) -> str:
    """The Content-Security-Policy of a report whose only script is ``script``."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; "
        f"script-src 'sha256-{digest}'; "
        "style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def page_context(title: str) -> dict[str, object]:
    """What ``report/partials/base.html.j2`` needs (CSS, script, CSP, helpers): start every page's
    template context with it (scan and diff reports do too)."""
    script = _asset("report.js")
    return {
        "title": title,
        # Static assets shipped with leakhunt (no target text in them).
        "css": Markup(_asset("report.css")),  # noqa: S704
        "script": Markup(script),  # noqa: S704
        "csp": csp(script),
        "generator": f"leakhunt {__version__}",
        "fmt": format_value,
        "human_bytes": views.human_bytes,
        "human_rate": views.human_rate,
        "human_duration": views.human_duration,
        "allocator_text": views.allocator_text,
    }


_common = page_context  # the name the first scan/diff renderers used


def memory_charts(inv: Investigation) -> list[Markup]:
    """RSS and anonymous memory together; VSZ apart (it is often 10x larger and would flatten them)."""
    if not inv.memory:
        return []
    rss = Series("RSS", [(m.t, float(m.rss)) for m in inv.memory])
    anon = Series("anonymous + swap", [(m.t, float(m.anon)) for m in inv.memory], dashed=True)
    charts = [
        line_chart(
            [rss, anon],
            title="Target resident memory (RSS, anonymous)",
            unit="bytes",
            chart_id="chart-rss",
            width=600,
        )
    ]
    vsz = Series("VSZ", [(m.t, float(m.vms)) for m in inv.memory], color="#6a3d9a")
    charts.append(
        line_chart(
            [vsz],
            title="Target virtual memory (VSZ)",
            width=600,
            unit="bytes",
            height=170,
            chart_id="chart-vsz",
            y_from_zero=False,
        )
    )
    return charts


def stacks_chart(inv: Investigation) -> Markup:
    """Outstanding bytes of the top stacks at every snapshot."""
    top = sorted(inv.findings, key=lambda f: f.rank)[:TOP_SERIES]
    series = [
        Series(
            f"#{f.rank} {views.top_frame(f)} ({f.verdict})",
            [(p.t, float(p.outstanding_bytes)) for p in f.series],
            dashed=f.verdict != "leak",
        )
        for f in top
    ]
    return line_chart(
        series,
        title=f"Outstanding bytes of the top {len(top)} stacks per snapshot",
        unit="bytes",
        chart_id="chart-stacks",
        width=1180,
        height=300,
    )


# Rows of the stacks table shown at a time (report.js pages longer tables; without script all show).
PAGE_SIZE = 100


def render_investigation(inv: Investigation) -> str:
    """The HTML report of an investigation, as one string."""
    truncated = sum(1 for s in inv.snapshots if s.truncated)
    found = views.leaks(inv)
    table = views.rows(inv)
    ctx = page_context(f"leakhunt: {inv.target.comm} (pid {inv.target.pid})")
    ctx.update(
        inv=inv,
        verdict=views.verdict_sentence(inv),
        mode_note=views.mode_note(inv),
        has_leak=bool(found),
        top=found[0] if found else None,
        top_frame=views.top_frame(found[0]) if found else "",
        rows=table,
        other_leaks=[r for r in table if r.verdict == "leak"][1:6],
        reproduce=views.reproduce_command(inv, "run" if inv.target.launched else "investigate"),
        stop=views.stop_text(inv.run, inv.target),
        quality=views.quality_lines(inv.quality, snapshots=len(inv.snapshots), truncated_snapshots=truncated),
        memory_charts=memory_charts(inv),
        stacks_chart=stacks_chart(inv),
        flame_outstanding=flame.outstanding_graph(inv.findings),
        flame_growth=flame.growth_graph(inv.findings),
        verdict_words=views.VERDICT_WORDS,
        verdict_order=list(VERDICT_ORDER),
        snapshots=views.snapshot_rows(inv),
        sparkline=sparkline,
        page_size=PAGE_SIZE,
    )
    return html_env().get_template("report/investigation.html.j2").render(ctx)


def rate_chart(tr: TraceResult) -> Markup:
    """Allocations per second and bytes per second over the trace."""
    if len(tr.rate) < 2:
        return line_chart([], title="Allocation rate", unit="bytes/s")
    step = max(tr.rate[1][0] - tr.rate[0][0], 1e-9)
    return line_chart(
        [Series("bytes allocated per second", [(t, b / step) for t, _n, b in tr.rate])],
        title="Bytes allocated per second",
        unit="bytes/s",
        chart_id="chart-rate",
        width=1180,
        height=260,
    )


def render_trace(tr: TraceResult) -> str:
    """The HTML report of a per-call trace, as one string."""
    ctx = page_context(f"leakhunt trace: {tr.target.comm} (pid {tr.target.pid})")
    by_size, by_thread = views.unfreed_groups(tr)
    ctx.update(
        tr=tr,
        processes=sorted(tr.processes, key=lambda p: -p.unfreed_bytes),
        unfreed=views.largest_unfreed(tr, 500),
        by_size=by_size,
        by_thread=by_thread,
        unfreed_total=sum(p.unfreed_count for p in tr.processes),
        stop=views.stop_text(tr.run, tr.target),
        reproduce=views.reproduce_command(tr, "trace"),
        quality=views.quality_lines(tr.quality, snapshots=0, truncated_snapshots=0)[:7],
        rate_chart=rate_chart(tr),
    )
    return html_env().get_template("report/trace.html.j2").render(ctx)


def render_html(doc: Investigation | TraceResult | ScanResult) -> str:
    """HTML of an investigation or trace (scans are rendered by ``report.scan``)."""
    if isinstance(doc, Investigation):
        return render_investigation(doc)
    if isinstance(doc, TraceResult):
        return render_trace(doc)
    raise TypeError("scans are rendered by leakhunt.report.scan.render_html")
