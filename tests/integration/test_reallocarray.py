"""reallocarray(3) with real probes: every backend counts each block once.

glibc's reallocarray calls realloc, whose NULL case calls malloc: three hooked functions nested (the
allocator hooks list reallocarray since the native backend). ``first_alloc 1 reallocarray`` keeps 7
blocks of 12,345 bytes made by reallocarray (odd ones by growing a 100-byte block that realloc
releases), so the leak site holds exactly 7 x 12,345 bytes: twice that is a nested call counted
again, less is a call missed, and 100-byte blocks left are a release missed. Run on Debian 12
(glibc 2.36) by the main suite and on Debian 13 (glibc 2.41) by scripts/debian13.sh.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration._probecli import assert_no_probe_left, load_report, run_leakhunt
from tests.integration.test_trace import leakhunt, only_report, unfreed

pytestmark = pytest.mark.probe

SIZE = 12345
COUNT = 7


@pytest.mark.parametrize("backend", ["native", "bpftrace", "bcc"])
def test_run_counts_each_reallocarray_block_once(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path, backend: str
) -> None:
    binary = build_target("first_alloc")
    code, _out, err = run_leakhunt(
        [
            "run", "--backend", backend, "--duration", "20", "--interval", "1",
            "--output-dir", str(tmp_path), "--format", "json", "--", str(binary), "2", "reallocarray",
        ]
    )  # fmt: skip
    assert code == 7, err
    report = load_report(tmp_path)
    assert report["stop_reason"] == "target-exited"
    at_site = [f for f in report["findings"] if f["frames"] and f["frames"][0].startswith("first_leak+")]
    assert at_site, [f["frames"][:2] for f in report["findings"]]
    # one stack (the reallocarray call), nothing left of the released 100-byte blocks
    assert sum(f["outstanding_bytes"] for f in at_site) == SIZE * COUNT, at_site
    assert [f["count"] for f in at_site] in ([COUNT], [None])
    assert_no_probe_left(report["target"]["pid"])


@pytest.mark.parametrize("backend", ["bpftrace", "bcc"])
def test_trace_lists_each_reallocarray_block_once(
    backend: str, probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    exe = build_target("first_alloc")
    proc = leakhunt(
        "trace", "--backend", backend, "--duration", "60", "--output-dir", str(tmp_path),
        "--format", "json", "--", str(exe), "1", "reallocarray",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = only_report(tmp_path)
    sizes = sorted(size for _, size, _ in unfreed(doc, doc.target.pid))
    assert sizes == [SIZE] * COUNT
