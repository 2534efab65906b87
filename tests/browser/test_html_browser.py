"""The HTML report in a real browser (Debian's Chromium, headless, driven over the DevTools pipe).

Checks what a reader would meet: the page loads nothing but itself, logs no error, shows its charts
and flame graphs, the flame graph answers hover and click, the table sorts, dark mode and print
styles apply. Screenshots go to tests/artifacts/ (git-ignored) for a human to look at.
The "no request" check is itself tested against pages that do make requests.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import (
    Frame,
    Investigation,
    RunInfo,
    Snapshot,
    Stack,
    StackSample,
    TraceProcess,
    TraceResult,
    Unfreed,
)
from leakhunt.report import jsonio, write_reports
from leakhunt.report.html import PAGE_SIZE
from leakhunt.report.svg import MAX_LINE_POINTS
from tests.browser.cdp import Browser, find_chromium
from tests.conftest import require_or_skip

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "reports"
FIXTURE = FIXTURES / "investigation-bpftrace.json"  # leakhunt run's own JSON, with unresolved frames too
REAL = sorted(FIXTURES.glob("investigation-*.json"))
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    require_or_skip(None if path else "chromium not installed (scripts/setup.sh installs it)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def page(chromium: str) -> Iterator[Browser]:
    with Browser(chromium, width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Investigation]:
    inv = jsonio.load(FIXTURE)
    assert isinstance(inv, Investigation)
    (path,) = write_reports(inv, tmp_path_factory.mktemp("html"), ["html"])
    return path, inv


def assert_offline_and_clean(page: Browser, path: Path) -> None:
    """The page requested nothing but its own file, and nothing went wrong in it."""
    own = path.resolve().as_uri()
    others = [u for u in page.log.requests if u != own and not u.startswith("data:")]
    assert others == [], f"requests left the file: {others}"
    assert page.log.errors() == []
    assert page.log.dialogs == []


def test_report_is_offline_error_free_and_complete(page: Browser, report: tuple[Path, Investigation]) -> None:
    path, inv = report
    page.log.requests.clear()
    page.open(path)
    assert_offline_and_clean(page, path)
    assert page.log.requests == [path.resolve().as_uri()]  # the checker saw the page's own load
    counts = page.eval(
        """({
        charts: document.querySelectorAll('svg.chart polyline').length,
        chartIds: Array.from(document.querySelectorAll('svg.chart')).map(s => s.id),
        flames: Array.from(document.querySelectorAll('svg.flame')).map(s => s.id),
        boxes: document.querySelectorAll('svg.flame g.fn').length,
        rows: document.querySelectorAll('#stack-table tbody tr').length,
        verdict: document.getElementById('verdict').textContent,
        width: document.documentElement.scrollWidth,
      })"""
    )
    assert counts["chartIds"] == ["chart-rss", "chart-vsz", "chart-stacks"]
    assert counts["charts"] >= 4  # RSS, anon, VSZ, and one line per stack
    assert counts["flames"] == ["flame-outstanding", "flame-growth"]
    assert counts["boxes"] >= 8
    assert counts["rows"] == len(inv.findings)
    assert counts["verdict"].startswith("Leak found: the stack allocating in leak_request")
    assert counts["width"] <= 1280  # readable at 1280 px: nothing overflows sideways
    page.screenshot(ARTIFACTS / "report-investigation.png")


@pytest.mark.parametrize("saved", REAL, ids=[p.name for p in REAL])
def test_readable_at_1280_px_with_every_stack_open(page: Browser, saved: Path, tmp_path: Path) -> None:
    inv = jsonio.load(saved)
    (path,) = write_reports(inv, tmp_path, ["html"])
    page.open(path)
    assert_offline_and_clean(page, path)
    page.eval("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.eval("document.documentElement.scrollWidth") <= 1280


def test_flame_graph_hover_and_zoom(page: Browser, report: tuple[Path, Investigation]) -> None:
    path, _ = report
    page.open(path)
    box = page.eval(
        """(() => {
        const g = document.querySelector('#flame-outstanding g.fn[data-name="warm_cache [report_leaker]"]');
        g.scrollIntoView({block: 'center'});
        const r = g.querySelector('rect').getBoundingClientRect();
        return {x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width};
      })()"""
    )
    page.mouse("mouseMoved", box["x"], box["y"])
    tip = page.eval(
        "({d: getComputedStyle(document.getElementById('tip')).display,"
        " t: document.getElementById('tip').textContent})"
    )
    assert tip["d"] == "block"
    assert tip["t"].startswith("warm_cache [report_leaker]") and "% of all outstanding bytes" in tip["t"]
    page.mouse("mousePressed", box["x"], box["y"])
    page.mouse("mouseReleased", box["x"], box["y"])
    zoomed = page.eval(
        """(() => {
        const svg = document.getElementById('flame-outstanding');
        const g = svg.querySelector('g.fn[data-name="warm_cache [report_leaker]"]');
        const other = svg.querySelector('g.fn[data-name="leak_request [report_leaker]"]');
        return {w: g.querySelector('rect').getBoundingClientRect().width,
                svgw: svg.getBoundingClientRect().width, hidden: other.style.display};
      })()"""
    )
    assert zoomed["w"] > box["w"] * 1.5 and zoomed["w"] >= zoomed["svgw"] * 0.95
    assert zoomed["hidden"] == "none"
    assert page.log.errors() == []


def test_stack_table_sorts(page: Browser, report: tuple[Path, Investigation]) -> None:
    path, _ = report
    page.open(path)
    ranks = "Array.from(document.querySelectorAll('#stack-table tbody tr')).map(r => r.cells[0].textContent)"
    before = page.eval(ranks)
    page.eval("document.querySelector('#stack-table th').click()")  # ascending
    page.eval("document.querySelector('#stack-table th').click()")  # descending
    assert page.eval(ranks) == sorted(before, key=int, reverse=True)
    page.eval("document.querySelectorAll('#stack-table th')[3].click()")  # outstanding bytes, ascending
    keys = page.eval(
        "Array.from(document.querySelectorAll('#stack-table tbody tr'))"
        ".map(r => Number(r.cells[3].dataset.key))"
    )
    assert keys == sorted(keys)


def test_dark_mode_and_print(page: Browser, report: tuple[Path, Investigation]) -> None:
    path, _ = report
    page.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        page.open(path)
        bg = page.eval("getComputedStyle(document.documentElement).backgroundColor")
        assert bg == "rgb(15, 18, 22)"
        page.screenshot(ARTIFACTS / "report-investigation-dark.png", full_page=False)
    finally:
        page.send("Emulation.setEmulatedMedia", {"features": []})
    page.send("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        page.open(path)
        assert page.eval("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
        assert page.eval("getComputedStyle(document.documentElement).backgroundColor") == "rgb(255, 255, 255)"
    finally:
        page.send("Emulation.setEmulatedMedia", {"media": ""})
    # Printing opens every collapsed stack (beforeprint) and gives a PDF.
    page.open(path)
    pdf = base64.b64decode(page.send("Page.printToPDF", {"printBackground": True})["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    assert page.eval("Array.from(document.querySelectorAll('#stack-table details')).every(d => d.open)")
    (ARTIFACTS / "report-investigation.pdf").write_bytes(pdf)
    assert page.log.errors() == []


@pytest.mark.parametrize("keep_csp", [False, True], ids=["without-csp", "with-csp"])
def test_the_offline_check_catches_a_page_that_phones_home(
    page: Browser, report: tuple[Path, Investigation], tmp_path: Path, keep_csp: bool
) -> None:
    """Negative control: the same report with an external image must fail the check."""
    path, _ = report
    html = path.read_text()
    if not keep_csp:
        html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    html = html.replace("<body>", '<body><img src="http://127.0.0.1:9/beacon.png" alt="">', 1)
    bad = tmp_path / "bad.html"
    bad.write_text(html)
    page.log.requests.clear()
    page.log.console.clear()
    page.log.log_entries.clear()
    page.open(bad)
    with pytest.raises(AssertionError):
        assert_offline_and_clean(page, bad)
    if keep_csp:
        # the CSP refused the load, and the browser said so
        assert any("Content Security Policy" in e for e in page.log.errors()), page.log.errors()
    else:
        assert "http://127.0.0.1:9/beacon.png" in page.log.requests


def test_trace_report_in_the_browser(
    page: Browser, report: tuple[Path, Investigation], tmp_path: Path
) -> None:
    _, inv = report
    trace = TraceResult(
        target=dataclasses.replace(inv.target, launched=True),
        backend=inv.backend,
        run=RunInfo(started_at=inv.run.started_at, duration_s=4.0),
        processes=(
            TraceProcess(
                inv.target.pid,
                inv.target.comm,
                1200,
                1100,
                3,
                tuple(Unfreed(0x5555_0000 + 512 * i, 512, inv.target.pid, 0.02 * i) for i in range(100)),
            ),
        ),
        end_time=4.0,
        rate=tuple((float(t), 300, 300 * 1024) for t in range(4)),
    )
    (path,) = write_reports(trace, tmp_path, ["html"])
    page.open(path)
    assert_offline_and_clean(page, path)
    assert page.eval("document.getElementById('verdict').textContent").startswith(
        "100 allocation(s) totalling"
    )
    assert page.eval("document.querySelectorAll('svg.chart polyline').length") == 1
    page.screenshot(ARTIFACTS / "report-trace.png")


def test_the_check_catches_script_that_runs(page: Browser, tmp_path: Path) -> None:
    """Negative control for the XSS test: an unescaped payload does raise a dialog we see."""
    bad = tmp_path / "xss.html"
    bad.write_text("<!DOCTYPE html><title>x</title><img src=x onerror=alert(1)>")
    page.log.dialogs.clear()
    page.open(bad, settle=1.0)
    assert page.log.dialogs == ["alert: 1"]
    page.log.dialogs.clear()
    page.log.requests.clear()
    page.log.console.clear()
    page.log.log_entries.clear()
    page.log.exceptions.clear()


def test_a_long_run_pages_its_stack_table_and_a_link_opens_the_right_page(
    page: Browser, tmp_path: Path
) -> None:
    # 250 stacks over 1,000 snapshots: the table pages, the charts stay small
    stacks = [Stack((Frame(f"site_{k}", 4, "prog"), Frame("main", 9, "prog"))) for k in range(250)]
    snaps = [
        Snapshot(t=float(i), stacks=tuple(StackSample(s, 100 + k * i, 1 + i) for k, s in enumerate(stacks)))
        for i in range(1000)
    ]
    inv = jsonio.load(FIXTURE)
    assert isinstance(inv, Investigation)
    inv = dataclasses.replace(inv, snapshots=(), findings=analyze_snapshots(snaps))
    (path,) = write_reports(inv, tmp_path, ["html"])
    assert path.stat().st_size < 3_000_000
    page.open(path)
    assert_offline_and_clean(page, path)
    shown = "Array.from(document.querySelectorAll('#stack-table tbody tr')).filter(r => !r.hidden)"
    first = page.eval(f"{shown}.map(r => r.id)")
    assert first == [f"stack-{i}" for i in range(1, PAGE_SIZE + 1)]
    assert page.eval("document.querySelector('.pager span').textContent.trim()") == "rows 1\u2013100 of 250"
    page.eval("document.querySelectorAll('.pager button')[1].click()")
    assert page.eval(f"{shown}.map(r => r.id)")[:1] == ["stack-101"]
    page.eval("window.location.hash = '#stack-240'")
    page.eval("new Promise(r => setTimeout(r, 100))")
    assert "stack-240" in page.eval(f"{shown}.map(r => r.id)")
    # sorting goes back to the first page of the new order
    page.eval("document.querySelector('#stack-table th').click()")
    assert len(page.eval(f"{shown}.map(r => r.id)")) == PAGE_SIZE
    # every line of a chart holds at most MAX_LINE_POINTS points
    longest = page.eval(
        "Math.max(...Array.from(document.querySelectorAll('svg.chart polyline'))"
        ".map(p => p.getAttribute('points').split(' ').length))"
    )
    assert 100 < longest <= MAX_LINE_POINTS
