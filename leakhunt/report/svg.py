"""Inline SVG charts for HTML reports: no JavaScript library, no CDN, readable printed.

Usage (any report template; the result is ``markupsafe.Markup``, put it in a template as is)::

    from leakhunt.report.svg import Series, line_chart

    chart = line_chart(
        [Series("RSS", [(0.0, 1_000_000), (5.0, 1_300_000)]),
         Series("anon", [(0.0, 400_000), (5.0, 700_000)], dashed=True)],
        title="Target memory",
        unit="bytes",          # "bytes" -> KiB/MiB/GiB ticks, "bytes/s", "count", or "" (plain numbers)
    )

Every piece of text (title, series names, which may come from the target) is escaped here, so the
Markup returned is safe to embed. Colours are fixed mid-tone hues readable on light and dark
backgrounds; axes and text use ``currentColor`` so they follow the page's colour scheme. Each point
carries a ``<title>`` (the browser's own tooltip: works without JavaScript and in every viewer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colour-blind-friendly hues (Okabe-Ito, slightly darkened) that keep contrast on white and on #111.
PALETTE: tuple[str, ...] = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#8c6d31",
    "#7f7f7f",
    "#b8860b",
    "#6a3d9a",
)


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, y) pairs, x usually seconds since the start."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str | None = None  # CSS colour; None picks from PALETTE by position
    dashed: bool = False


def format_value(value: float, unit: str = "bytes") -> str:
    """A number as a reader wants it: ``1.5 MiB``, ``12 KiB/s``, ``3,400``."""
    if not math.isfinite(value):
        return "n/a"
    if unit in ("bytes", "bytes/s"):
        suffix = "/s" if unit == "bytes/s" else ""
        size = abs(value)
        for name, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if size >= scale:
                scaled = value / scale
                digits = 0 if abs(scaled) >= 100 else 1 if abs(scaled) >= 10 else 2
                return f"{scaled:.{digits}f} {name}{suffix}"
        return f"{value:.0f} B{suffix}" if float(value).is_integer() else f"{value:.1f} B{suffix}"
    if unit == "s":
        return f"{value:.1f} s" if abs(value) < 120 else f"{value / 60:.1f} min"
    text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


_BYTE_UNITS = (("GiB", float(1 << 30)), ("MiB", float(1 << 20)), ("KiB", 1024.0))


def _axis_scale(lo: float, hi: float, unit: str) -> tuple[float, str]:
    """(divisor, unit name) for axis labels: one unit for the whole axis, chosen by its largest value."""
    if unit not in ("bytes", "bytes/s"):
        return 1.0, unit
    suffix = "/s" if unit == "bytes/s" else ""
    top = max(abs(lo), abs(hi))
    for name, scale in _BYTE_UNITS:
        if top >= scale:
            return scale, name + suffix
    return 1.0, "B" + suffix


def _nice_step(span: float, target_ticks: int) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(target_ticks, 1)
    if raw <= 0.0:  # a subnormal span divides to zero: treat it as a flat axis
        return 1.0
    exp = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        if mult * exp >= raw:
            return mult * exp
    return 10 * exp


def _ticks(lo: float, hi: float, target_ticks: int) -> list[float]:
    """Round tick values covering [lo, hi] (in the axis' display unit)."""
    step = _nice_step(hi - lo, target_ticks)
    k = math.floor(lo / step + 1e-9)
    out: list[float] = []
    while len(out) < 50:
        v = round(k * step, 10)
        out.append(v)
        if v >= hi - step * 1e-9:
            break
        k += 1
    return out


def _f(v: float) -> str:
    return f"{v:.1f}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "bytes",
    x_label: str = "seconds since start",
    width: int = 720,
    height: int = 240,
    y_from_zero: bool = True,
    chart_id: str | None = None,
) -> Markup:
    """An inline ``<svg>`` line chart of one or more series with axes, ticks, legend and point tooltips.

    ``unit`` formats the y axis and tooltips (see ``format_value``). Series without points are listed
    in the legend only. With no points at all the chart says "no data" instead of drawing axes.
    The SVG scales to its container's width (viewBox) and has ``role="img"`` and an aria-label.
    """
    pts = [p for s in series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    left, right, top, bottom = 78, 16, 30, 40
    legend_rows = math.ceil(len(series) / 3) if len(series) > 1 else 0
    total_h = height + legend_rows * 18
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    head = (
        f'<svg class="chart line-chart"{ident} viewBox="0 0 {width} {total_h}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>"
        f'<text x="{left}" y="18" font-weight="600" fill="currentColor">{escape(title)}</text>'
    )
    if not pts:
        body = (
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="currentColor" '
            f'opacity="0.7">no data</text>'
        )
        return Markup(head + body + "</svg>")  # noqa: S704 - title escaped in head

    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if y_from_zero:
        y_lo = min(0.0, y_lo)
    if x_hi == x_lo:
        x_hi = x_lo + 1.0
    if y_hi == y_lo:
        y_hi = y_lo + (abs(y_lo) * 0.1 or 1.0)
    scale, axis_unit = _axis_scale(y_lo, y_hi, unit)
    y_ticks = [v * scale for v in _ticks(y_lo / scale, y_hi / scale, 5)]
    y_lo, y_hi = min(y_lo, y_ticks[0]), max(y_hi, y_ticks[-1])
    x_ticks = [x for x in _ticks(x_lo, x_hi, 8) if x_lo - 1e-9 <= x <= x_hi + 1e-9]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y_lo) / (y_hi - y_lo) * ph

    parts = [head]
    # grid and axes
    parts.append('<g class="axes" stroke="currentColor" stroke-opacity="0.18">')
    for yt in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(sy(yt))}" y2="{_f(sy(yt))}"/>')
    parts.append("</g>")
    parts.append(
        f'<g stroke="currentColor" stroke-opacity="0.6"><line x1="{left}" x2="{left}" y1="{top}" '
        f'y2="{top + ph}"/><line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/></g>'
    )
    parts.append('<g class="ticks" fill="currentColor" fill-opacity="0.8">')
    for yt in y_ticks:
        parts.append(
            f'<text x="{left - 6}" y="{_f(sy(yt) + 4)}" text-anchor="end">'
            f"{escape(f'{yt / scale:g} {axis_unit}'.strip())}</text>"
        )
    for xt in x_ticks:
        label = f"{xt:g}"
        parts.append(
            f'<text x="{_f(sx(xt))}" y="{top + ph + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.0f}" y="{top + ph + 32}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append("</g>")
    # lines
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        good = sorted(
            (p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])), key=lambda p: p[0]
        )
        if not good:
            continue
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        good = downsample(good)
        path = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in good)
        parts.append(
            f'<g class="series" data-series="{escape(s.name)}"><polyline points="{path}" fill="none" '
            f'stroke="{escape(color)}" stroke-width="2"{dash} stroke-linejoin="round"/>'
        )
        # Markers with tooltips; beyond ~120 points they would be noise, so thin them out.
        stride = max(1, len(good) // 120)
        for x, y in good[::stride]:
            tip = f"{s.name}: {format_value(y, unit)} at {x:g} s"
            parts.append(
                f'<circle cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="2.6" fill="{escape(color)}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        parts.append("</g>")
    # legend
    if len(series) > 1:
        col_w = (width - left) / 3
        for i, s in enumerate(series):
            color = s.color or PALETTE[i % len(PALETTE)]
            lx = left + (i % 3) * col_w
            ly = height + (i // 3) * 18 + 4
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            name = s.name if len(s.name) <= 48 else s.name[:47] + "\u2026"
            parts.append(
                f'<g class="legend"><line x1="{_f(lx)}" x2="{_f(lx + 18)}" y1="{ly}" y2="{ly}" '
                f'stroke="{escape(color)}" stroke-width="3"{dash}/><text x="{_f(lx + 24)}" y="{ly + 4}" '
                f'fill="currentColor">{escape(name)}<title>{escape(s.name)}</title></text></g>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


# A line chart is at most ~1,200 pixels wide: more points than this per series add bytes, not detail.
MAX_LINE_POINTS = 600


def downsample(
    points: Sequence[tuple[float, float]], limit: int = MAX_LINE_POINTS
) -> list[tuple[float, float]]:
    """At most ``limit`` of ``points`` (sorted by x): in each of ``limit / 2`` buckets its lowest and its
    highest point, in x order, so that peaks and troughs survive (plus the first and the last point)."""
    n = len(points)
    if n <= limit:
        return list(points)
    buckets = max(limit // 2 - 1, 1)
    out = [points[0]]
    for b in range(buckets):
        lo, hi = 1 + b * (n - 2) // buckets, 1 + (b + 1) * (n - 2) // buckets
        chunk = points[lo:hi]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        out.extend(chunk[i] for i in sorted({low, high}))
    out.append(points[-1])
    return out


def sparkline(values: Sequence[float], *, title: str = "", width: int = 110, height: int = 22) -> Markup:
    """A tiny inline trend line (no axes) for a table cell; ``title`` is its tooltip."""
    good = [v for v in values if math.isfinite(v)]
    if len(good) > 60:
        # A 110-pixel line cannot show more; long runs would otherwise bloat every table row.
        good = [good[round(i * (len(good) - 1) / 59)] for i in range(60)]
    tip = f"<title>{escape(title)}</title>" if title else ""
    if len(good) < 2:
        return Markup(  # noqa: S704 - only escaped text
            f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" xmlns="http://www.w3.org/2000/svg">{tip}</svg>'
        )
    lo, hi = min(*good, 0.0), max(good)
    span = (hi - lo) or 1.0
    step = (width - 4) / (len(good) - 1)
    pts = " ".join(
        f"{2 + i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(good)
    )
    return Markup(  # noqa: S704 - numbers and escaped text only
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">{tip}<polyline points="{pts}" fill="none" '
        f'stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/></svg>'
    )
