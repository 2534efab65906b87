"""Inline SVG charts and flame graphs: well-formed, escaped, meaningful axes."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from hypothesis import example, given
from hypothesis import strategies as st

from leakhunt.model import Finding, Frame, SeriesPoint, Stack, Verdict
from leakhunt.report.flame import build_tree, growth_graph, outstanding_graph
from leakhunt.report.svg import Series, downsample, format_value, line_chart

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def test_line_chart_axes_legend_and_tooltips() -> None:
    svg = line_chart(
        [Series("RSS", [(0, 1 << 20), (5, 2 << 20), (10, 3 << 20)]), Series("anon", [(0, 0), (10, 1 << 20)])],
        title="Target memory",
        unit="bytes",
        chart_id="c1",
    )
    root = _parse(svg)
    assert root.get("id") == "c1" and root.get("role") == "img"
    texts = [t.text or "" for t in root.iter(f"{NS}text")]
    assert "Target memory" in texts
    # one unit for the whole axis, round values
    assert {"0 MiB", "1 MiB", "2 MiB", "3 MiB"} <= set(texts)
    assert len(root.findall(f".//{NS}polyline")) == 2
    titles = [t.text for t in root.iter(f"{NS}title")]
    assert "RSS: 2.00 MiB at 5 s" in titles
    assert any(t.strip() == "anon" for t in texts)  # legend


def test_line_chart_escapes_series_names_and_titles() -> None:
    evil = '<script>alert(1)</script>"'
    svg = line_chart([Series(evil, [(0, 1), (1, 2)]), Series("b", [])], title=evil, unit="count")
    root = _parse(svg)  # still well-formed XML
    assert "<script>" not in svg
    assert not list(root.iter(f"{NS}script")) and not list(root.iter("script"))
    assert evil in [t.text for t in root.iter(f"{NS}title")]


def test_line_chart_without_points_says_so() -> None:
    root = _parse(line_chart([Series("x", [])], title="Nothing"))
    assert "no data" in [t.text for t in root.iter(f"{NS}text")]
    root = _parse(line_chart([Series("x", [(0, math.nan), (1, math.inf)])], title="Bad"))
    assert "no data" in [t.text for t in root.iter(f"{NS}text")]


@given(st.lists(st.tuples(st.floats(-1e12, 1e12), st.floats(-1e15, 1e15)), max_size=30))
@example(points=[(0.0, 5e-324)])  # a subnormal span once made log10(0) raise
def test_line_chart_never_fails_and_is_well_formed(points: list[tuple[float, float]]) -> None:
    root = _parse(line_chart([Series("s", points)], title="t", unit="bytes"))
    for el in root.iter():
        for attr in ("x", "y", "cx", "cy", "x1", "y1"):
            if el.get(attr) is not None:
                assert math.isfinite(float(el.get(attr) or "nan"))


def test_format_value() -> None:
    assert format_value(1536, "bytes") == "1.50 KiB"
    assert format_value(25.1 * 1024, "bytes/s") == "25.1 KiB/s"
    assert format_value(300 * (1 << 20), "bytes") == "300 MiB"
    assert format_value(512, "bytes") == "512 B"
    assert format_value(math.nan) == "n/a"


def _finding(rank: int, frames: list[str], nbytes: int, rate: float, verdict: Verdict = "leak") -> Finding:
    stack = Stack(tuple(Frame(f, 1, "app") for f in frames))
    return Finding(rank, stack, verdict, nbytes, 1, rate, 1.0, 0.0, 1.0, (SeriesPoint(0.0, nbytes),))


def test_flame_tree_merges_by_function_from_the_outermost_frame() -> None:
    a = _finding(1, ["leak", "handler", "main"], 300, 10.0)
    b = _finding(2, ["cache", "handler", "main"], 100, 50.0, "plateau")
    c = _finding(3, ["other", "main"], 600, -5.0)
    root = build_tree((f.stack.frames, float(f.outstanding_bytes)) for f in (a, b, c))
    assert root.value == 1000
    (main,) = root.children.values()
    handler = main.children["handler [app]"]
    assert handler.value == 400 and set(handler.children) == {"leak [app]", "cache [app]"}
    svg = outstanding_graph([a, b, c])
    boxes = {g.get("data-name"): g for g in _parse(svg).iter(f"{NS}g")}
    assert boxes["other [app]"].get("data-share") == "60.0"
    # leak rate: shrinking stacks and plateaus have no box, the leak takes the whole width
    grow = {g.get("data-name"): g for g in _parse(growth_graph([a, b, c])).iter(f"{NS}g")}
    assert "other [app]" not in grow and "cache [app]" not in grow
    assert grow["leak [app]"].get("data-share") == "100.0"


def test_flame_escapes_symbols_and_handles_empty() -> None:
    evil = _finding(1, ['<img src=x onerror="alert(1)">', "main"], 10, 1.0)
    svg = outstanding_graph([evil])
    root = _parse(svg)
    assert not list(root.iter(f"{NS}img")) and "<img" not in svg
    assert '<img src=x onerror="alert(1)"> [app]' in [g.get("data-name") for g in root.iter(f"{NS}g")]
    assert "nothing to show" in growth_graph([_finding(1, ["a"], 10, math.nan)])


def test_downsample_keeps_peaks_troughs_and_the_ends() -> None:
    pts = [(float(i), float(i % 97)) for i in range(10_000)]
    pts[5000] = (5000.0, 1e6)  # one spike
    out = downsample(pts, 200)
    assert len(out) <= 200
    assert out[0] == pts[0] and out[-1] == pts[-1]
    assert (5000.0, 1e6) in out
    assert [x for x, _ in out] == sorted(x for x, _ in out)
    assert downsample(pts[:50], 200) == pts[:50]
