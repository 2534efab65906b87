"""Every format rendered from real investigation JSON; report files written safely."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
import stat
from html import unescape
from pathlib import Path

import pytest

from leakhunt.errors import UsageError
from leakhunt.model import (
    Finding,
    Frame,
    Investigation,
    RunInfo,
    ScanResult,
    SourceSnippet,
    Stack,
    TraceProcess,
    TraceResult,
    Unfreed,
)
from leakhunt.report import (
    FORMATS,
    default_stem,
    jsonio,
    parse_formats,
    render,
    render_bytes,
    views,
    write_reports,
)
from leakhunt.report.views import top_frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reports"
REAL = sorted(FIXTURES.glob("investigation-*.json"))


@pytest.fixture(params=REAL, ids=[p.name for p in REAL])
def inv(request: pytest.FixtureRequest) -> Investigation:
    doc = jsonio.load(request.param)
    assert isinstance(doc, Investigation)
    return doc


def _trace(inv: Investigation) -> TraceResult:
    return TraceResult(
        target=inv.target,
        backend=inv.backend,
        run=RunInfo(started_at=inv.run.started_at, duration_s=5.0),
        processes=(
            TraceProcess(
                inv.target.pid,
                inv.target.comm,
                100,
                90,
                2,
                (Unfreed(0x55550000, 512, inv.target.pid, 1.5), Unfreed(0x55560000, 4096, 7, 2.0)),
            ),
        ),
        end_time=5.0,
        rate=((0.0, 10, 5120), (1.0, 12, 6144), (2.0, 9, 4608)),
    )


def test_html_has_summary_charts_flame_table_and_quality(inv: Investigation) -> None:
    html = render_bytes(inv, "html").decode()
    top = inv.findings[0]
    assert top.verdict == "leak" and top.stack.frames[0].symbol == "leak_request"
    summary = html[: html.index('id="charts"')]
    # summary first: the verdict sentence names the leaking function, rate and bytes
    assert re.search(r"Leak found: the stack allocating in leak_request grew at [\d.]+ KiB/s", summary)
    assert "leak_request+0x" in summary and "Reproduce" in summary
    if inv.target.launched:
        assert re.search(r"leakhunt run --duration \d+ --interval [\d.]+ .*-- \S*report_leaker \d+", summary)
    else:
        assert f"leakhunt investigate {inv.target.pid} --duration" in summary
    # charts: memory over time and outstanding bytes per stack, as inline SVG
    assert 'id="chart-rss"' in html and 'id="chart-vsz"' in html and 'id="chart-stacks"' in html
    # flame graphs of outstanding bytes and of growth, with a box per function
    for graph in ("flame-outstanding", "flame-growth"):
        svg = html[html.index(f'id="{graph}"') :]
        svg = svg[: svg.index("</svg>")]
        assert 'data-name="leak_request [report_leaker]"' in svg
    outstanding = html[html.index('id="flame-outstanding"') :]
    assert 'data-name="warm_cache [report_leaker]"' in outstanding[: outstanding.index("</svg>")]
    # every stack in the sortable table, the plateau too
    table = html[html.index('id="stack-table"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == len(inv.findings) + 1
    assert all(f'<tr id="stack-{f.rank}">' in table for f in inv.findings)
    assert "plateau" in table and "data-sort" in table
    # data quality lists every field
    for label in (
        "Lost events",
        "Dropped stacks",
        "Map full",
        "Unparsed lines",
        "Truncated stacks",
        "[unknown] frames",
        "Sampling",
    ):
        assert f"<td>{label}</td>" in html
    assert inv.backend.version in html and inv.run.kernel in html
    # nothing loads from the network: no external URL in any src/href, a CSP forbids it anyway
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None and "default-src 'none'" in unescape(csp.group(1))


def test_markdown_has_summary_top_stack_in_code_block_and_collapsed_details(inv: Investigation) -> None:
    md = render_bytes(inv, "md").decode()
    first = md.splitlines()[0]
    assert first.startswith("# Memory leak report: `report_leaker`")
    assert "**Leak found: the stack allocating in leak\\_request grew at" in md
    block = re.search(r"```\n(leak_request\+0x[0-9a-f]+ \[report_leaker\]\n.*?)```", md, re.S)
    assert block is not None and "main+0x" in block.group(1)
    assert md.count("<details>") == md.count("</details>") >= 3
    assert md.index("## Top findings") < md.index("<details>")
    assert "warm\\_cache" in md or "`warm_cache`" in md  # the plateau is listed in the details


def test_json_render_equals_dump(inv: Investigation) -> None:
    buf = io.StringIO()
    render(inv, "json", buf)
    assert buf.getvalue() == jsonio.dumps(inv)


def test_exports_render_from_real_json(inv: Investigation) -> None:
    folded = render_bytes(inv, "folded").decode()
    assert any("leak_request" in line for line in folded.splitlines())
    pprof = render_bytes(inv, "pprof")
    assert gzip.decompress(pprof)  # a gzipped protobuf


def test_render_to_binary_stream_and_text_stream(inv: Investigation) -> None:
    raw = io.BytesIO()
    render(inv, "md", raw)
    assert raw.getvalue().decode() == render_bytes(inv, "md").decode()
    with pytest.raises(UsageError, match="binary"):
        render(inv, "pprof", io.StringIO())


def test_trace_renders_in_every_format(inv: Investigation) -> None:
    tr = _trace(inv)
    for fmt in FORMATS:
        assert render_bytes(tr, fmt)
    html = render_bytes(tr, "html").decode()
    assert "2 allocation(s) totalling 4.50 KiB were still not freed" in html
    assert "0x55560000" in html
    md = render_bytes(tr, "md").decode()
    assert "| 4.00 KiB |" in md


def test_real_trace_renders_in_every_format() -> None:
    """tests/fixtures/exports/trace-bcc-0.26.json: a real BCC memleak -t capture (see its README)."""
    tr = jsonio.load(FIXTURES.parent / "exports" / "trace-bcc-0.26.json")
    assert isinstance(tr, TraceResult)
    unfreed = sum(p.unfreed_count for p in tr.processes)
    for fmt in FORMATS:
        assert render_bytes(tr, fmt)
    html = render_bytes(tr, "html").decode()
    assert f"{unfreed} allocation(s) totalling" in html and 'id="by-size"' in html
    md = render_bytes(tr, "md").decode()
    assert "## Not freed, by size" in md and md.count("<details>") == md.count("</details>")


def test_scan_renders_through_the_scan_module() -> None:
    scan = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=1.0, host="box"),
        interval_s=1.0,
        processes=(),
        sampled=3,
        unreadable=0,
    )
    html = render_bytes(scan, "html").decode()
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html
    assert render_bytes(scan, "md").decode().strip()


def test_an_interrupted_scan_report_says_how_much_of_the_window_it_covers() -> None:
    full = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=60.0),
        interval_s=1.0,
        processes=(),
        sampled=3,
        unreadable=0,
        planned_duration_s=60.0,
    )
    cut = dataclasses.replace(
        full,
        run=dataclasses.replace(full.run, duration_s=12.0, stop_reason="interrupted"),
    )
    note = "Interrupted after 12 s of the planned 60 s: verdicts use the samples gathered so far."
    html = render_bytes(cut, "html").decode()
    assert f'<p class="partial" id="partial">{note}</p>' in html
    assert "12 s (interrupted, 60 s planned)" in html
    assert "leakhunt scan --duration 60 " in html  # the window asked for, not the one covered
    md = render_bytes(cut, "md").decode()
    assert f"> {note}" in md and "| Window | 12 s (interrupted, 60 s planned)," in md
    for fmt in ("html", "md"):
        assert "Interrupted" not in render_bytes(full, fmt).decode()
        assert "interrupted" not in render_bytes(full, fmt).decode()
    # An older file that did not record the plan still says it was cut short.
    old = dataclasses.replace(cut, planned_duration_s=None)
    assert "Interrupted after 12 s: verdicts use" in render_bytes(old, "md").decode()


def test_scan_refuses_stack_formats() -> None:
    scan = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=1.0),
        interval_s=1.0,
        processes=(),
        sampled=0,
        unreadable=0,
    )
    for fmt in ("folded", "pprof"):
        with pytest.raises(UsageError, match="does not apply to a scan"):
            render(scan, fmt, io.BytesIO())
    assert jsonio.loads(render_bytes(scan, "json").decode()) == scan


def test_parse_formats() -> None:
    assert parse_formats("html, MD,json,html") == ("html", "md", "json")
    assert parse_formats(["html", "pprof"]) == ("html", "pprof")
    with pytest.raises(UsageError, match="unknown report format 'pdf'"):
        parse_formats("html,pdf")
    with pytest.raises(UsageError, match="no report format"):
        parse_formats(" , ")


def test_write_reports_names_modes_and_atomicity(inv: Investigation, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "reports"
    old_umask = os.umask(0o022)
    try:
        paths = write_reports(inv, out, ["html", "md", "json", "folded", "pprof"])
    finally:
        os.umask(old_umask)
    stem = default_stem(inv)
    assert re.fullmatch(rf"leakhunt-investigation-report_leaker-{inv.target.pid}-\d{{8}}-\d{{6}}", stem)
    assert [p.name for p in paths] == [
        f"{stem}{ext}" for ext in (".html", ".md", ".json", ".folded", ".pb.gz")
    ]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)  # no temporary file left behind
    assert jsonio.load(paths[2]) == inv
    # rewriting replaces the files in place
    again = write_reports(inv, out, ["json"])
    assert again == [paths[2]] and len(os.listdir(out)) == 5


def test_write_reports_redacts_unless_told_not_to(inv: Investigation, tmp_path: Path) -> None:
    secret = dataclasses.replace(
        inv, target=dataclasses.replace(inv.target, cmdline=("app", "password=hunter2"))
    )
    (red,) = write_reports(secret, tmp_path / "a", ["html"])
    assert "hunter2" not in red.read_text() and "password=***" in red.read_text()
    (kept,) = write_reports(secret, tmp_path / "b", ["html"], redact=False)
    assert "password=hunter2" in kept.read_text()


def test_write_reports_sanitises_hostile_comm(inv: Investigation, tmp_path: Path) -> None:
    hostile = dataclasses.replace(inv, target=dataclasses.replace(inv.target, comm="../../<img src=x>"))
    (p,) = write_reports(hostile, tmp_path, ["md"])
    assert p.parent == tmp_path
    assert re.fullmatch(r"leakhunt-investigation-img_src_x-\d+-\d{8}-\d{6}\.md", p.name)


def test_write_reports_errors_are_usage_errors(inv: Investigation, tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        write_reports(inv, afile, ["json"])
    with pytest.raises(UsageError, match="unknown report format"):
        write_reports(inv, tmp_path, ["json", "docx"])
    assert not list(tmp_path.glob("leakhunt-*"))  # nothing written when a format is bad


def test_a_run_without_data_still_renders_and_says_so(inv: Investigation) -> None:
    empty = dataclasses.replace(
        inv,
        snapshots=(),
        findings=(),
        memory=(),
        run=dataclasses.replace(inv.run, stop_reason="interrupted", duration_s=0.8),
        target=dataclasses.replace(inv.target, exited_early=True),
    )
    html = render_bytes(empty, "html").decode()
    assert "No data: the probe took no snapshot (interrupted after 0.8 s)." in html
    assert "Partial run: interrupted after 0.8 s." in html
    assert "was not sampled" in html and "nothing to show" in html
    md = render_bytes(empty, "md").decode()
    assert "No data: the probe took no snapshot" in md and "No stack was judged a leak." in md
    assert "> Partial run: interrupted after 0.8 s." in md
    assert jsonio.loads(render_bytes(empty, "json").decode()) == empty


def test_no_leak_verdict_mentions_plateaus(inv: Investigation) -> None:
    calm = dataclasses.replace(inv, findings=tuple(f for f in inv.findings if f.verdict != "leak"))
    html = render_bytes(calm, "html").decode()
    wanted = r"No leak found over [\d.]+ s: \d stack\(s\) grew and then stopped growing \(plateau\)"
    assert re.search(wanted, html)


def test_other_leaks_are_listed_under_the_top_one(inv: Investigation) -> None:
    second = dataclasses.replace(inv.findings[1], verdict="leak")
    doc = dataclasses.replace(inv, findings=(inv.findings[0], second, *inv.findings[2:]))
    html = render_bytes(doc, "html").decode()
    others = html[html.index('id="other-leaks"') :]
    others = others[: others.index("</ul>")]
    assert f'href="#stack-{second.rank}"' in others and "warm_cache" in others
    assert "(2 leaking stacks in all)" in html


def test_html_shows_the_allocating_line_escaped_or_why_not(inv: Investigation) -> None:
    if not any(f.verdict == "leak" for f in inv.findings):
        pytest.skip("no leak in this fixture")
    top = next(f for f in inv.findings if f.verdict == "leak")
    shown = SourceSnippet("/src/server.c", 42, 40, ("a();", "b();", "x = malloc(<n>);", "c();"))
    stack = Stack(
        (Frame("malloc", 0, "libc.so.6"), Frame("parse_request", 0x19, "srv", None, "/src/server.c", 42))
    )
    with_src: Finding = dataclasses.replace(top, stack=stack, source=shown)
    doc = dataclasses.replace(inv, findings=tuple(with_src if f is top else f for f in inv.findings))
    assert top_frame(with_src) == "parse_request (server.c:42)"
    html = render_bytes(doc, "html").decode()
    part = html.split('id="top-source"', 1)[1].split("</figure>", 1)[0]
    assert "/src/server.c:42" in part
    assert "x = malloc(&lt;n&gt;);" in part and "<n>" not in part
    assert re.search(r'class="hit"><span class="ln">\s*42</span> x = malloc', part)
    assert "parse_request+0x19 [srv] (server.c:42)" in html
    assert jsonio.loads(jsonio.dumps(doc)) == doc
    # not readable here: the report says so
    missing = dataclasses.replace(
        with_src, source=SourceSnippet("/src/server.c", 42, error="source not readable here")
    )
    doc = dataclasses.replace(inv, findings=tuple(missing if f is top else f for f in inv.findings))
    html = render_bytes(doc, "html").decode()
    assert "source not readable here" in html.split('id="top-source"', 1)[1].split("</p>", 1)[0]


def test_the_rows_of_a_document_are_built_once_for_every_format(inv: Investigation) -> None:
    first = views.rows(inv)
    assert views.rows(inv) is first and views.snapshot_rows(inv) is views.snapshot_rows(inv)
    fewer = dataclasses.replace(inv, findings=inv.findings[:1])  # another document: its own rows
    assert len(views.rows(fewer)) == 1 and views.rows(inv) == first and views.rows(inv) is not first


_CPP_STACK = (  # leakhunt run -- svc (g++ -O2 -g -fomit-frame-pointer, tcmalloc), its leaking stack
    Frame("operator new(unsigned long)", 0x1A, "libtcmalloc.so.4.5.10"),
    Frame(
        "std::__new_allocator<char>::allocate(unsigned long, void const*)",
        None,
        "svc",
        None,
        "/usr/include/c++/12/bits/new_allocator.h",
        137,
        inlined=True,
    ),
    Frame(
        "std::vector<char, std::allocator<char> >::_M_default_append(unsigned long)",
        0x7F,
        "svc",
        None,
        "/usr/include/c++/12/bits/vector.tcc",
        650,
    ),
    Frame(
        "std::vector<char, std::allocator<char> >::resize(unsigned long)",
        None,
        "svc",
        None,
        "/usr/include/c++/12/bits/stl_vector.h",
        1011,
        inlined=True,
    ),
    Frame("make_session(int)", 0x50C, "svc", None, "/src/svc/svc.cc", 24),
    Frame("handle_request(int)", 0xBC, "svc", None, "/src/svc/svc.cc", 30),
    Frame("[unknown]", None, "libstdc++.so.6.0.30"),
    Frame("start_thread", None, "libc.so.6", None, "./nptl/pthread_create.c", 442),
)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # the program's own code, past the standard library's templates compiled into it
        (_CPP_STACK, "make_session(int) (svc.cc:24)"),
        # no debug info: the names say which functions are the standard library's
        (tuple(dataclasses.replace(fr, file=None, line=None) for fr in _CPP_STACK), "make_session(int)"),
        # a libc function allocating for the program: the program's call
        (
            (
                Frame("malloc", 0, "libc.so.6"),
                Frame("__fopen_internal", 0x20, "libc.so.6"),
                Frame("load_config", 0x11, "app", None, "/src/app.c", 7),
            ),
            "load_config (app.c:7)",
        ),
        # nothing but the runtimes: the innermost past the allocator, as before
        (
            (
                Frame("malloc", 0, "libc.so.6"),
                Frame("__fopen_internal", 0x20, "libc.so.6"),
                Frame("start_thread", 0, "libc.so.6"),
            ),
            "__fopen_internal",
        ),
        # nothing but the standard library's code: its innermost frame, not inlined
        (
            _CPP_STACK[1:3],
            "std::vector<char, std::allocator<char> >::_M_default_append(unsigned long) (vector.tcc:650)",
        ),
        # a template of the program's own returning a std type is the program's
        (
            (
                Frame("operator new(unsigned long)", 0, "libstdc++.so.6"),
                Frame(
                    "std::unique_ptr<Session, std::default_delete<Session> > factory<Session>(int)", 8, "svc"
                ),
            ),
            "std::unique_ptr<Session, std::default_delete<Session> > factory<Session>(int)",
        ),
        # a kernel stack: past the slab allocator
        (
            (Frame("kmalloc_trace", 0, "kernel"), Frame("do_eventfd", 0x30, "kernel")),
            "do_eventfd",
        ),
    ],
)
def test_the_headline_names_the_programs_own_frame(
    inv: Investigation, frames: tuple[Frame, ...], expected: str
) -> None:
    finding = dataclasses.replace(inv.findings[0], stack=Stack(frames))
    assert top_frame(finding) == expected
