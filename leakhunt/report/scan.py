"""HTML and Markdown reports of a scan (``leakhunt scan``), with any escalated investigations.

``render_html(scan, stream)`` / ``render_md(scan, stream)`` are what ``leakhunt.report.render``
dispatches a ScanResult to. Renderers never open files.

Per suspect (and per sawtooth/plateau process, which a reader also wants to see) the report shows
the trend of its memory with the verdict and the numbers behind it: in HTML an inline SVG chart
(``report.svg.line_chart``); in Markdown a text sparkline, because GitHub and GitLab strip inline SVG
from Markdown. When ``--investigate-top`` ran, each investigated process is followed by the stacks
its investigation found growing, and by how much of the growth the scan measured they explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from markupsafe import Markup

from leakhunt.analyze.trend import SUSPECT_VERDICTS, VERDICT_RANK, troughs
from leakhunt.model import Finding, Investigation, ProcessTrend, ScanResult
from leakhunt.report import html as html_report
from leakhunt.report import markdown as md_report
from leakhunt.report import views
from leakhunt.report.safetext import neutralize
from leakhunt.report.svg import Series, line_chart
from leakhunt.templating import html_env
from leakhunt.units import mb_per_hour

# Processes given a chart of their own, in rank order (suspects first).
MAX_CHARTS = 20
CHARTED = frozenset({"leak-suspect", "growing", "sawtooth", "plateau"})
SPARK = "▁▂▃▄▅▆▇█"
BADGE = {"leak-suspect": "leak", "growing": "plateau", "sawtooth": "transient", "plateau": "transient"}


@dataclass(frozen=True)
class Escalation:
    """An investigated process: the scan's judgement next to the stacks found growing."""

    process: ProcessTrend | None  # None if the investigated pid is not in the scan (should not happen)
    investigation: Investigation
    leaks: tuple[Finding, ...]
    explained_bytes_per_sec: float  # summed growth of the stacks judged leaks
    explained_share: float | None  # of the scan's measured growth rate, when that was positive

    @property
    def pid(self) -> int:
        return self.investigation.target.pid

    @property
    def mode(self) -> str:
        """alloc, or growth when ``scan --investigate-mode growth`` watched page faults first."""
        return views.mode_of(self.investigation)

    @property
    def anchor(self) -> str:
        """The HTML id of this investigation (a pid may be investigated twice: growth, then alloc)."""
        return f"inv-{self.pid}" if self.mode == "alloc" else f"inv-{self.pid}-{self.mode}"

    @property
    def mode_note(self) -> str:
        return views.mode_note(self.investigation)

    @property
    def followup(self) -> str:
        """What growth mode pointed at and what exact probing made of it (the scan's own note)."""
        prefix = "scan --investigate-mode growth:"
        return next((n for n in self.investigation.quality.notes if n.startswith(prefix)), "")


@dataclass(frozen=True)
class ProcessView:
    """One process as the report shows it."""

    p: ProcessTrend
    rank: int
    verdict: str
    badge: str
    rate_text: str
    mb_per_hour: str
    growth_text: str
    anon_text: str
    rss_text: str
    vms_text: str
    swap_text: str
    suspect: bool
    command: str
    escalation: Escalation | None


def escalations(scan: ScanResult) -> list[Escalation]:
    """Each investigation linked to the scan process it investigated."""
    by_pid = {p.key.pid: p for p in scan.processes}
    out = []
    for inv in scan.investigations:
        proc = by_pid.get(inv.target.pid)
        found = tuple(views.leaks(inv))
        explained = sum(f.growth_bytes_per_sec for f in found)
        measured = proc.evidence.slope_bytes_per_sec if proc else 0.0
        share = explained / measured if measured > 0 else None
        out.append(Escalation(proc, inv, found, explained, share))
    return out


def process_views(scan: ScanResult) -> list[ProcessView]:
    """Every process of the scan as the report shows it, in rank order."""
    by_pid = {e.pid: e for e in escalations(scan)}
    out = []
    for i, p in enumerate(scan.processes, 1):
        last = p.samples[-1] if p.samples else None
        rate = p.evidence.slope_bytes_per_sec
        out.append(
            ProcessView(
                p=p,
                rank=i,
                verdict=p.verdict + (" + address-space growth" if p.evidence.address_space_growth else ""),
                badge=BADGE.get(p.verdict, "stable"),
                rate_text=views.human_rate(rate),
                mb_per_hour=mb_per_hour(rate),
                growth_text=views.human_bytes(p.evidence.growth_bytes),
                anon_text=views.human_bytes(last.anon) if last else "n/a",
                rss_text=views.human_bytes(last.rss) if last else "n/a",
                vms_text=views.human_bytes(last.vms) if last else "n/a",
                swap_text=views.human_bytes(last.swap) if last and last.swap is not None else "n/a",
                suspect=p.verdict in SUSPECT_VERDICTS,
                command=f"sudo leakhunt investigate {p.key.pid}",
                escalation=by_pid.get(p.key.pid),
            )
        )
    return out


def charted(rows: Sequence[ProcessView]) -> list[ProcessView]:
    """The processes that get a chart: every non-stable or investigated one, up to MAX_CHARTS."""
    return [r for r in rows if r.p.verdict in CHARTED or r.escalation is not None][:MAX_CHARTS]


def trend_chart(p: ProcessTrend) -> Markup:
    """anon+swap (the signal judged) and RSS over the scan; VSZ too when it is the story."""
    series = [
        Series("anonymous + swap (judged)", [(m.t, float(m.anon)) for m in p.samples]),
        Series("RSS", [(m.t, float(m.rss)) for m in p.samples], dashed=True),
    ]
    floor = troughs(p.samples) if p.evidence.drops >= 2 else []
    if floor:
        series.append(Series("lower envelope (troughs)", floor, color="#009e73"))
    if p.evidence.address_space_growth:
        series.append(Series("VSZ", [(m.t, float(m.vms)) for m in p.samples], color="#6a3d9a", dashed=True))
    return line_chart(
        series,
        title=f"pid {p.key.pid} {p.name}: {p.verdict}",
        unit="bytes",
        height=200,
        chart_id=f"chart-{p.key.pid}",
    )


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """``▁▂▄▆█``: the shape of a series in text, resampled to at most ``width`` characters."""
    if not values:
        return ""
    if len(values) > width:
        step = (len(values) - 1) / (width - 1)
        values = [values[round(i * step)] for i in range(width)]
    lo, hi = min(values), max(values)
    if hi <= lo:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(int((v - lo) / (hi - lo) * len(SPARK)), len(SPARK) - 1)] for v in values)


def _summary(scan: ScanResult, rows: Sequence[ProcessView]) -> str:
    suspects = [r for r in rows if r.suspect]
    took = views.human_duration(scan.run.duration_s)
    if not suspects:
        return f"No process grew steadily enough to be a suspect in {took} ({len(rows)} processes judged)."
    names = ", ".join(f"{r.p.name} (pid {r.p.key.pid})" for r in suspects[:3])
    more = f" and {len(suspects) - 3} more" if len(suspects) > 3 else ""
    return f"{len(suspects)} suspect(s) in {took}, of {len(rows)} processes judged: {names}{more}."


def stop_note(scan: ScanResult) -> str | None:
    """How the scan ended when it did not sample its whole window, in words; None when it did.

    A reader of the report must know the verdicts rest on a shorter window than asked for: a leak
    needs time to show, so a short window leans towards "growing" and "stable"."""
    if scan.run.stop_reason == "duration":
        return None
    took = views.human_duration(scan.run.duration_s)
    planned = scan.planned_duration_s
    of_planned = f" of the planned {views.human_duration(planned)}" if planned is not None else ""
    how = "Interrupted" if scan.run.stop_reason == "interrupted" else f"Stopped ({scan.run.stop_reason})"
    return f"{how} after {took}{of_planned}: verdicts use the samples gathered so far."


def _context(scan: ScanResult) -> dict[str, object]:
    rows = process_views(scan)
    counts = {v: sum(1 for r in rows if r.p.verdict == v) for v in VERDICT_RANK}
    return {
        "scan": scan,
        "rows": rows,
        "charted": charted(rows),
        "suspects": [r for r in rows if r.suspect],
        "summary": _summary(scan, rows),
        "stop_note": stop_note(scan),
        "counts": counts,
        "verdict_rank": VERDICT_RANK,
        "escalations": escalations(scan),
        "kernel": kernel_view(scan),
        "human_bytes": views.human_bytes,
        "human_rate": views.human_rate,
        "human_duration": views.human_duration,
        "top_frame": views.top_frame,
        "frames": lambda f: "\n".join(fr.display() for fr in f.stack.frames) or "[no stack]",
        "sparkline": lambda p: sparkline([float(m.anon) for m in p.samples]),
        "reproduce": reproduce_command(scan),
        "started": lambda p: datetime.fromtimestamp(p.key.create_time, UTC).isoformat(timespec="seconds"),
    }


@dataclass(frozen=True)
class KernelView:
    """The kernel's unreclaimable slab as the scan report shows it."""

    verdict: str
    suspect: bool
    rate_text: str
    mb_per_hour: str
    first_text: str
    last_text: str
    caches: tuple[tuple[str, str, str, str], ...]  # name, first, last, growth rate
    note: str


def kernel_view(scan: ScanResult) -> KernelView | None:
    """The kernel's slab memory over the scan, or None when it was not sampled."""
    k = scan.kernel_memory
    if k is None or not k.samples:
        return None
    rate = k.evidence.slope_bytes_per_sec
    return KernelView(
        verdict=k.verdict,
        suspect=k.verdict in SUSPECT_VERDICTS,
        rate_text=views.human_rate(rate),
        mb_per_hour=mb_per_hour(rate),
        first_text=views.human_bytes(k.samples[0].rss),
        last_text=views.human_bytes(k.samples[-1].rss),
        caches=tuple(
            (
                c.name,
                views.human_bytes(c.first_bytes),
                views.human_bytes(c.last_bytes),
                views.human_rate(c.slope_bytes_per_sec),
            )
            for c in k.caches
        ),
        note=k.note,
    )


def reproduce_command(scan: ScanResult) -> str:
    """The command that repeats this scan's window (the planned one, if the scan was cut short)."""
    window = scan.planned_duration_s if scan.planned_duration_s is not None else scan.run.duration_s
    return f"leakhunt scan --duration {window:.0f} --interval {scan.interval_s:g}"


def render_html(scan: ScanResult, stream: IO[str]) -> None:
    """Write the self-contained HTML report of ``scan`` to ``stream``."""
    # The same page frame, CSS, script and CSP as the other reports (report.html).
    ctx = html_report.page_context(f"leakhunt scan: {scan.run.host or 'host'}")
    ctx.update(_context(scan))
    ctx["chart"] = trend_chart
    stream.write(html_env().get_template("report/scan.html.j2").render(ctx))


def render_md(scan: ScanResult, stream: IO[str]) -> None:
    """Write the Markdown report of ``scan`` to ``stream`` (charts as sparklines and inline SVG)."""
    ctx = _context(scan)
    # One line of SVG (line_chart escapes every text it draws), so it stays one raw-HTML block.
    ctx["chart"] = lambda p: str(trend_chart(p)).replace("\n", " ")
    stream.write(neutralize(md_report.environment().get_template("report/scan.md.j2").render(ctx)))
