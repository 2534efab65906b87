"""Growth mode with real probes: first-touch page faults per user stack.

tests/targets/growth_leaker.c fills a 4 MiB cache once, churns a 1 KiB block (freed and reused),
and keeps adding 16 KiB blocks it writes itself (leak_pages). In growth mode the stack through
leak_pages must rank 1 as growing, the cache must not be a leak, and the report must say first
that it counted pages touched, not memory proven never freed.
"""

from __future__ import annotations

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
