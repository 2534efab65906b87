"""A hostile target, investigated for real, cannot inject anything into its reports.

The leaky target tests/targets/report_leaker.c is copied to a file literally named
``<img src=x onerror=alert(1)>`` (so its comm, executable path and frames' module carry markup)
and gets hostile arguments plus secrets on its command line. ``leakhunt run`` probes it with BCC
memleak (which, unlike bpftrace, can share libc's uprobes with another eBPF tool running at the same
time); then the HTML is checked as text (everything escaped, secrets redacted) and in headless
Chromium (no dialog, no error, no request, the hostile text shown as text).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.browser.cdp import Browser, find_chromium
from tests.conftest import require_or_skip

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_ARGS = (
    '"><script>alert(2)</script>',
    "<svg onload=alert(3)>",
    "password=hunter2",
    "--token",
    "s3cr3t-t0ken",
    "https://bob:pa55w0rd@example.com/x",
)
SECRETS = ("hunter2", "s3cr3t-t0ken", "pa55w0rd")


@pytest.fixture(scope="module")
def hostile_reports(
    probe_env: None, build_target: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    binary = build_target("report_leaker")
    bindir = tmp_path_factory.mktemp("bin")
    hostile = bindir / HOSTILE_NAME
    shutil.copy2(binary, hostile)
    out = tmp_path_factory.mktemp("reports")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leakhunt",
            "run",
            "--duration",
            "30",
            "--interval",
            "1",
            "--backend",
            "bcc",
            "--format",
            "html,md,json",
            "--output-dir",
            str(out),
            "--",
            str(hostile),
            # 8 s of leaking at 1 s snapshots: enough points to call the leak on a busy 2-core
            # machine (3 s once gave BCC too few snapshots; the run ends when the target exits)
            "8",
            *HOSTILE_ARGS,
        ],
        env={**os.environ, "LEAKHUNT_CACHE_AT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reports = {p.suffix: p for p in out.iterdir()}
    assert set(reports) == {".html", ".md", ".json"}, proc.stderr
    return reports


def test_the_probe_really_saw_the_hostile_target(hostile_reports: dict[str, Path]) -> None:
    doc = json.loads(hostile_reports[".json"].read_text())
    assert doc["target"]["comm"].startswith(HOSTILE_NAME[:15])  # the kernel keeps 15 bytes of it
    assert doc["target"]["cmdline"][0].endswith(HOSTILE_NAME)
    leaks = [f["frames"][0] for f in doc["findings"] if f["verdict"] == "leak"]
    assert any(frame.startswith("leak_request+") for frame in leaks), leaks
    # the module of the frames is the hostile file name too
    assert any(HOSTILE_NAME in frame for frame in leaks)
    # the file name cannot pick where the report goes or what it is called
    assert all(
        "<" not in p.name and p.name.startswith("leakhunt-investigation-img_src")
        for p in hostile_reports.values()
    )


def test_html_escapes_everything_and_redacts_secrets(hostile_reports: dict[str, Path]) -> None:
    html = hostile_reports[".html"].read_text()
    assert html.count("<script") == 1  # leakhunt's own script, nothing else
    for raw in ("<img src=x", "<svg onload", '"><script>', "onerror=alert(1)>"):
        assert raw not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;svg onload=alert(3)&gt;" in html
    for secret in SECRETS:
        for path in hostile_reports.values():
            assert secret not in path.read_text(), (secret, path.name)
    assert "password=***" in html and "--token ***" in html and "bob:***@example.com" in html


def test_markdown_keeps_hostile_text_inert(hostile_reports: dict[str, Path]) -> None:
    """Rendered as GitHub would (CommonMark + tables, raw HTML allowed), no hostile element appears."""
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(hostile_reports[".md"].read_text())
    tags: list[str] = []
    attrs: list[str] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, a: list[tuple[str, str | None]]) -> None:
            tags.append(tag)
            attrs.extend(name for name, _ in a)

    Collect().feed(html)
    assert not {"img", "svg", "script"} & set(tags)
    assert not [a for a in attrs if a.startswith("on")]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_nothing_executes_in_a_browser(hostile_reports: dict[str, Path]) -> None:
    chromium = find_chromium()
    require_or_skip(None if chromium else "chromium not installed (scripts/setup.sh installs it)")
    assert chromium is not None
    path = hostile_reports[".html"]
    with Browser(chromium) as page:
        page.open(path, settle=1.5)
        assert page.log.dialogs == []
        assert page.log.errors() == []
        assert page.log.requests == [path.resolve().as_uri()]
        seen = page.eval(
            """({imgs: document.querySelectorAll('img').length,
                scripts: document.querySelectorAll('script').length,
                svgOnload: Array.from(document.querySelectorAll('svg'))
                    .filter(s => s.hasAttribute('onload')).length,
                handlers: Array.from(document.querySelectorAll('*')).filter(
                    e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
                text: document.body.innerText})"""
        )
        assert seen["imgs"] == 0 and seen["scripts"] == 1 and seen["svgOnload"] == 0 and seen["handlers"] == 0
        assert HOSTILE_NAME[:15] in seen["text"]
        assert '"><script>alert(2)</script>' in seen["text"]
        page.screenshot(
            Path(__file__).resolve().parent.parent / "artifacts" / "report-hostile.png", full_page=False
        )
