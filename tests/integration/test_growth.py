"""Growth mode with real probes: first-touch page faults per user stack.

tests/targets/growth_leaker.c fills a 4 MiB cache once, churns a 1 KiB block (freed and reused),
and keeps adding 16 KiB blocks it writes itself (leak_pages). In growth mode the stack through
leak_pages must rank 1 as growing, the cache must not be a leak, and the report must say first
that it counted pages touched, not memory proven never freed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from leakhunt.model import Investigation
from leakhunt.report import jsonio
from tests.integration._probecli import run_leakhunt

pytestmark = pytest.mark.probe


def _functions(finding_frames: tuple[str, ...]) -> list[str]:
    return [f.split("+")[0].split(" ")[0] for f in finding_frames]


def test_the_stack_that_keeps_adding_pages_ranks_first(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    binary = build_target("growth_leaker")
    code, _out, err = run_leakhunt(
        ["run", "--mode", "growth", "--duration", "40", "--interval", "1", "--output-dir", str(tmp_path),
         "--format", "json,md", "--", str(binary), "10"],
        timeout=240,
    )  # fmt: skip
    assert code == 0, err
    reports = sorted(tmp_path.glob("leakhunt-investigation-*.json"))
    assert len(reports) == 1
    inv = jsonio.load(reports[0])
    assert isinstance(inv, Investigation)
    assert ("mode", "growth") in inv.options
    top = inv.findings[0]
    names = [f.symbol for f in top.stack.frames]
    assert "leak_pages" in names, [(f.rank, f.verdict, f.stack.key[:160]) for f in inv.findings[:5]]
    assert top.verdict == "leak"
    # 16 KiB every 20 ms is 800 KiB/s of new pages; allow a busy host's slower loop
    assert 200 * 1024 <= top.growth_bytes_per_sec <= 1000 * 1024, top.reason
    for f in inv.findings:
        frames = [fr.symbol for fr in f.stack.frames]
        if "fill_cache" in frames or "churn" in frames:
            assert f.verdict != "leak", (f.stack.key[:160], f.reason)
    assert any(note.startswith("growth mode counts pages") for note in inv.quality.notes)
    assert any("address space since start: brk +" in note for note in inv.quality.notes)
    md = next(tmp_path.glob("*.md")).read_text()
    head = md.split("## ", 1)[0]
    assert "Memory growth found" in head and "not proven leaked" in head and "Growth mode:" in head


def test_scan_investigates_in_growth_mode_first_then_exactly(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    """scan --investigate-mode growth: growth mode points at leak_pages, exact probing confirms it."""
    binary = build_target("growth_leaker")
    target = subprocess.Popen([str(binary), "120"], stdout=subprocess.DEVNULL)
    try:
        code, _out, err = run_leakhunt(
            ["scan", "--pid", str(target.pid), "--duration", "6", "--interval", "1",
             "--investigate-top", "1", "--investigate-mode", "growth", "--investigate-duration", "16",
             "--output-dir", str(tmp_path), "--format", "json,md,html"],
            timeout=400,
        )  # fmt: skip
    finally:
        target.kill()
        target.wait()
    assert code == 0, err
    [saved] = tmp_path.glob("leakhunt-scan-*.json")
    doc = json.loads(saved.read_text())
    grew, exact = doc["investigations"]
    assert ["mode", "growth"] in grew["options"] and ["mode", "growth"] not in exact["options"]
    assert "leak_pages" in grew["findings"][0]["frames"][0] or any(
        "leak_pages" in fr for fr in grew["findings"][0]["frames"]
    )
    [story] = [n for n in exact["quality"]["notes"] if n.startswith("scan --investigate-mode growth")]
    assert "leak_pages" in story and "exact probing confirmed" in story, story
    top = exact["findings"][0]
    assert top["verdict"] == "leak" and any("leak_pages" in fr for fr in top["frames"])
    md = next(tmp_path.glob("leakhunt-scan-*.md")).read_text()
    assert f"### Investigation pid {target.pid} (growth mode)" in md
    page = next(tmp_path.glob("leakhunt-scan-*.html")).read_text()
    assert f'id="inv-{target.pid}-growth"' in page and f'id="inv-{target.pid}"' in page
