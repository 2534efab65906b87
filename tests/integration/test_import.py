"""``leakhunt import`` as a user runs it on captured logs: what it detects, the reports it writes,
clean errors. Inputs are the parser fixtures (tests/fixtures/README.md)."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from leakhunt.model import Investigation, TraceResult
from leakhunt.report import jsonio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def leakhunt(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leakhunt", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(directory: Path) -> Investigation | TraceResult:
    (path,) = directory.glob("*.json")
    doc = jsonio.load(path)
    assert isinstance(doc, Investigation | TraceResult)
    return doc


# logs whose growing stack is seen in two snapshots only (two blocks; listed in two of four top-N blocks)
JUDGED_ON_TWO = {"bcc-0.31-combined-only.txt", "handmade/libbpf-tools-memleak.txt"}


@pytest.mark.parametrize(
    ("name", "detected", "snapshots"),
    [
        ("bcc-0.26-periodic-cpp.txt", "memleak periodic stack blocks", 4),
        ("bcc-0.26-periodic-a.txt", "memleak periodic stack blocks", 4),
        ("bcc-0.26-kernel.txt", "memleak periodic stack blocks", 1),
        ("bpftrace-0.17-protocol.json", "bpftrace -f json maps", 1),
        ("bpftrace-0.17-protocol-default-stack.txt", "bpftrace text maps", 5),
        # Debian 13 (scripts/debian13.sh --capture)
        ("bcc-0.31-periodic-cpp.txt", "memleak periodic stack blocks", 4),
        ("bcc-0.31-periodic-a.txt", "memleak periodic stack blocks", 4),
        ("bcc-0.31-combined-only.txt", "memleak periodic stack blocks", 2),
        ("bpftrace-0.23-protocol.json", "bpftrace -f json maps", 6),
        ("bpftrace-0.23-protocol.txt", "bpftrace text maps", 6),
        ("bpftrace-0.23-protocol-default-stack.json", "bpftrace -f json maps", 7),
        ("handmade/libbpf-tools-memleak.txt", "memleak periodic stack blocks", 4),
        ("handmade/bpftrace-0.24-protocol.json", "bpftrace -f json maps", 3),
    ],
)
def test_stack_logs_become_investigation_reports(
    name: str, detected: str, snapshots: int, tmp_path: Path
) -> None:
    proc = leakhunt("import", str(FIXTURES / name), "--output-dir", str(tmp_path), "--format", "json,html,md")
    # a stack seen growing in two snapshots only cannot be judged, one snapshot shows no growth at
    # all: inconclusive, status 4
    inconclusive = name in JUDGED_ON_TWO or snapshots == 1
    assert proc.returncode == (4 if inconclusive else 0), proc.stderr
    assert ("inconclusive, not a clean result" in proc.stdout) == inconclusive
    assert f"detected {detected}" in proc.stdout
    assert len(list(tmp_path.iterdir())) == 3
    doc = report(tmp_path)
    assert isinstance(doc, Investigation)
    assert len(doc.snapshots) == snapshots
    assert doc.run.stop_reason == "imported" and name in doc.backend.reason
    assert doc.quality.unparsed_lines == 0


@pytest.mark.parametrize("form", ["json", "txt"])
def test_a_bpftrace_023_log_of_map_full_errors_is_imported_as_map_full(form: str, tmp_path: Path) -> None:
    """bpftrace 0.23 with maps too small prints thousands of "Map full" errors between its maps
    (captured on Debian 13): the report says the counts are incomplete, and no line is unparsed."""
    log = tmp_path / f"bt.{form}"
    log.write_bytes(gzip.decompress((FIXTURES / f"bpftrace-0.23-protocol-mapfull.{form}.gz").read_bytes()))
    proc = leakhunt("import", str(log), "--output-dir", str(tmp_path / "out"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = report(tmp_path / "out")
    assert isinstance(doc, Investigation)
    assert len(doc.snapshots) == 3 and doc.quality.unparsed_lines == 0
    assert doc.quality.map_full is True
    assert any(n.startswith("bpftrace could not store 6,734 map updates") for n in doc.quality.notes)


def test_the_cpp_leak_is_rank_one_with_its_demangled_stack(tmp_path: Path) -> None:
    proc = leakhunt("import", str(FIXTURES / "bcc-0.26-periodic-cpp.txt"), "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = report(tmp_path)
    assert isinstance(doc, Investigation)
    first = doc.findings[0]
    assert first.verdict == "leak"
    assert [f.display() for f in first.stack.frames[:2]] == [
        "operator new(unsigned long)+0x1c [libstdc++.so.6.0.30]",
        "main+0x277 [cpp_leaker]",
    ]
    assert doc.target.pid == 8399  # from memleak's "Attaching to pid 8399"
    assert "#1 leak" in proc.stdout


def test_imports_never_claim_the_importing_machine(tmp_path: Path) -> None:
    """Where a capture was made is known only when the log says it (a trace saved by leakhunt
    trace --save-raw records host and kernel); else the report says unknown."""
    pasted = leakhunt("import", str(FIXTURES / "bcc-0.26-trace.txt"), "--output-dir", str(tmp_path / "p"))
    assert pasted.returncode == 0, pasted.stderr
    doc = report(tmp_path / "p")
    assert (doc.run.host, doc.run.kernel) == ("", "")
    md = next((tmp_path / "p").glob("*.md")).read_text()
    assert socket.gethostname() not in md and "unknown host" in md

    saved = tmp_path / "saved.raw"
    saved.write_text(
        "leakhunt: target pid 11748 comm top\nleakhunt: started_at 2026-11-20T09:00:00+00:00\n"
        "leakhunt: host capture-box kernel 6.1.0-28-amd64\n" + (FIXTURES / "bcc-0.26-trace.txt").read_text()
    )
    again = leakhunt("import", str(saved), "--output-dir", str(tmp_path / "s"))
    assert again.returncode == 0, again.stderr
    doc = report(tmp_path / "s")
    assert (doc.run.host, doc.run.kernel, doc.run.started_at) == (
        "capture-box",
        "6.1.0-28-amd64",
        "2026-11-20T09:00:00+00:00",
    )

    stacks = leakhunt(
        "import", str(FIXTURES / "bcc-0.26-periodic-cpp.txt"), "--output-dir", str(tmp_path / "i")
    )
    assert stacks.returncode == 0, stacks.stderr
    inv = report(tmp_path / "i")
    assert (inv.run.host, inv.run.kernel) == ("", "")


def test_memleak_trace_log_becomes_a_trace_report(tmp_path: Path) -> None:
    proc = leakhunt("import", str(FIXTURES / "bcc-0.26-trace.txt"), "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "detected memleak -t per-call trace" in proc.stdout
    doc = report(tmp_path)
    assert isinstance(doc, TraceResult)
    # memleak names threads only, and these threads never free each other's blocks: one entry each
    assert len(doc.processes) == 3
    assert sum(p.unfreed_count for p in doc.processes) == 27
    assert sum(p.unfreed_bytes for p in doc.processes) == 46656
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["kind"] == "trace"
    first = data["processes"][0]
    assert {"pid", "unfreed_count", "unfreed_bytes", "unfreed"} <= set(first)
    assert {"address", "size", "tid", "time"} <= set(first["unfreed"][0])


def test_stdin_with_a_named_kind(tmp_path: Path) -> None:
    text = (FIXTURES / "handmade" / "bcc-py2-trace-interleaved.txt").read_text()
    proc = leakhunt(
        "import",
        "-",
        "--kind",
        "memleak-trace",
        "--output-dir",
        str(tmp_path),
        "--format",
        "json",
        stdin=text,
    )
    assert proc.returncode == 0, proc.stderr
    assert "read as memleak -t per-call trace" in proc.stdout
    doc = report(tmp_path)
    assert isinstance(doc, TraceResult)
    assert doc.quality.unparsed_lines == 2  # the ('Unknown', ...) tuple and the garbage line
    assert any("Unknown" in example for example in doc.quality.unparsed_examples)


def test_unparsable_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    lines = (FIXTURES / "bcc-0.26-periodic-cpp.txt").read_text().splitlines()
    lines[5:5] = ["<<< pasted from a chat >>>", "\x00\x01 binary junk"]
    noisy = tmp_path / "noisy.log"
    noisy.write_text("\n".join(lines) + "\n")
    proc = leakhunt("import", str(noisy), "--output-dir", str(tmp_path / "out"), "--format", "json,md")
    assert proc.returncode == 0, proc.stderr
    doc = report(tmp_path / "out")
    assert doc.quality.unparsed_lines == 2
    assert "<<< pasted from a chat >>>" in doc.quality.unparsed_examples
    assert "2 line(s) could not be parsed" in proc.stdout


def test_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nthis is not a memleak log\n")
    for args, message in (
        (["import", str(junk)], "looks like memleak or bpftrace output"),
        (["import", str(tmp_path / "missing.log")], "no such file"),
        (["import", str(tmp_path)], "is a directory"),
        (["import", "--kind", "bpftrace", str(FIXTURES / "bcc-0.26-periodic-cpp.txt")], "no snapshot found"),
        (["import", "--kind", "memleak-trace", str(junk)], "no allocation or free found"),
        (["import", "-", "-"], "only once"),
    ):
        proc = leakhunt(*args, "--output-dir", str(tmp_path / "out"))
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_several_files_give_one_report_each_and_a_crashed_memleak_is_explained(tmp_path: Path) -> None:
    proc = leakhunt(
        "import",
        str(FIXTURES / "bcc-0.26-kernel.txt"),
        str(FIXTURES / "bpftrace-0.17-trace.txt"),
        "--output-dir",
        str(tmp_path),
        "--format",
        "json",
    )
    assert proc.returncode == 4, proc.stderr  # the worst of the two: the kernel log is one snapshot
    kinds = sorted(json.loads(p.read_text())["kind"] for p in tmp_path.glob("*.json"))
    assert kinds == ["investigation", "trace"]
    crashed = leakhunt(
        "import", str(FIXTURES / "bcc-0.26-combined-only-crash.txt"), "--output-dir", str(tmp_path)
    )
    assert crashed.returncode == 2 and "Traceback" not in crashed.stderr
    assert "memleak crashed: AttributeError" in crashed.stderr and "--combined-only" in crashed.stderr


def test_help_names_every_kind() -> None:
    proc = leakhunt("import", "--help")
    assert proc.returncode == 0
    for kind in ("memleak", "memleak-trace", "bpftrace", "bpftrace-json", "bpftrace-trace"):
        assert kind in proc.stdout
