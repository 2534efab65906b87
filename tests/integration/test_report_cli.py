"""``leakhunt report`` and ``leakhunt diff`` as a user runs them: a real process, real files, exit codes.

Inputs: the saved reports in tests/fixtures/reports/ and tests/fixtures/diff/ (real BCC memleak
runs; READMEs there say how each was made). The last test probes for real: it builds
tests/targets/fixleak.c leaky and fixed, watches both with BCC memleak, and diffs the two.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from leakhunt.analyze.stacks import analyze_snapshots
from leakhunt.model import BackendInfo, Investigation, RunInfo, ScanResult, Target
from leakhunt.parse import ParseStats
from leakhunt.parse.memleak import parse_memleak
from leakhunt.report import jsonio
from tests.conftest import ROOT
from tests.viewers import go_pprof, go_pprof_raw

FIXTURES = ROOT / "tests" / "fixtures"
DIFF = FIXTURES / "diff"
SAVED = (
    sorted((FIXTURES / "reports").glob("*.json"))
    + sorted(DIFF.glob("investigation-*.json"))
    + sorted((FIXTURES / "exports").glob("*.json"))
)


def leakhunt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leakhunt", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip()


@pytest.mark.parametrize("saved", SAVED, ids=lambda p: p.name)
def test_report_rerenders_every_format(saved: Path, tmp_path: Path) -> None:
    doc = jsonio.load(saved)
    stacks = not isinstance(doc, ScanResult)
    formats = "html,md,json,folded,pprof" if stacks else "html,md,json"
    proc = leakhunt("report", str(saved), "--format", formats, "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == len(formats.split(","))
    for path in written:
        assert f"report: {path}" in proc.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # not world-readable
        assert path.stat().st_size > 0
    by_ext = {p.name.split(".", 1)[1]: p for p in written}
    again = jsonio.load(by_ext["json"])
    assert type(again) is type(doc)
    assert "<!DOCTYPE html>" in by_ext["html"].read_text()
    if stacks:
        go_pprof(by_ext["pb.gz"], "-top")  # go tool pprof accepts it
        assert all(line.rpartition(" ")[2].isdigit() for line in by_ext["folded"].read_text().splitlines())


def test_output_file_name_picks_the_format(tmp_path: Path) -> None:
    saved = DIFF / "investigation-v1.json"
    proc = leakhunt("report", str(saved), "-o", str(tmp_path / "leak.pb.gz"))
    assert proc.returncode == 0, proc.stderr
    raw = go_pprof_raw(tmp_path / "leak.pb.gz")
    assert raw.sample_types[0] == "inuse_space/bytes"
    proc = leakhunt("report", str(saved), "-o", str(tmp_path / "g.folded"), "--value", "growth")
    assert proc.returncode == 0, proc.stderr
    inv = jsonio.load(saved)
    assert isinstance(inv, Investigation)
    top = inv.findings[0]
    line = next(
        x for x in (tmp_path / "g.folded").read_text().splitlines() if x.split(" ")[0].endswith(top.stack.top)
    )
    assert int(line.rpartition(" ")[2]) == top.series[-1].outstanding_bytes - top.series[0].outstanding_bytes


def test_markdown_to_stdout() -> None:
    proc = leakhunt("report", str(DIFF / "investigation-v2.json"), "--format", "md", "-o", "-")
    assert proc.returncode == 0, proc.stderr
    assert "log_request" in proc.stdout and "open_session" in proc.stdout
    assert proc.stdout.lstrip().startswith("#")


def _scans(tmp_path: Path) -> list[Path]:
    """Saved scan reports, plus an empty scan written here so the check never runs on nothing."""
    empty = ScanResult(
        run=RunInfo(started_at="2026-11-25T09:00:00+00:00", duration_s=1.0),
        interval_s=1.0,
        processes=(),
        sampled=0,
        unreadable=0,
    )
    path = tmp_path / "empty-scan.json"
    with path.open("w") as fh:
        jsonio.dump(empty, fh)
    return [p for p in SAVED if isinstance(jsonio.load(p), ScanResult)] + [path]


def test_bad_inputs_fail_cleanly(tmp_path: Path) -> None:
    assert_clean_error(leakhunt("report", str(tmp_path / "missing.json")))
    assert_clean_error(leakhunt("report", str(DIFF / "memleak-v1.txt")))  # not JSON
    (tmp_path / "other.json").write_text(json.dumps({"kind": "investigation", "schema_version": 1}))
    assert_clean_error(leakhunt("report", str(tmp_path / "other.json")))
    proc = leakhunt("report", str(DIFF / "investigation-v1.json"), "--format", "html,md", "-o", "x.html")
    assert_clean_error(proc)
    assert "one file" in proc.stderr
    for scan in _scans(tmp_path):
        proc = leakhunt("report", str(scan), "--format", "folded", "-o", "-")
        assert_clean_error(proc)
        assert "call stacks" in proc.stderr


def test_diff_exit_status_and_reports(tmp_path: Path) -> None:
    v1, v2, v3 = (str(DIFF / f"investigation-v{v}.json") for v in (1, 2, 3))
    half = leakhunt("diff", v1, v2)
    assert half.returncode == 1, half.stderr
    assert "new leak (1):" in half.stdout and "log_request" in half.stdout
    assert "stopped leaking (1):" in half.stdout and "parse_request" in half.stdout
    fixed = leakhunt("diff", v1, v3)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("Fixed: 2 stacks stopped leaking")
    # Known leaks tolerated, only new ones fail:
    assert leakhunt("diff", v2, v2, "--fail-on", "new").returncode == 0
    assert leakhunt("diff", v3, v1, "--fail-on", "new").returncode == 1
    assert leakhunt("diff", v3, v1, "--fail-on", "never").returncode == 0
    out = tmp_path / "diffs"
    proc = leakhunt("diff", v1, v2, "--format", "html,md,json", "--output-dir", str(out))
    assert proc.returncode == 1
    files = {p.suffix: p for p in out.iterdir()}
    assert set(files) == {".html", ".md", ".json"}
    assert json.loads(files[".json"].read_text())["counts"] == {
        "new": 1,
        "still": 1,
        "fixed": 1,
        "other": 1,
    }
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.values())
    proc = leakhunt("diff", v1, v2, "-o", "-", "--format", "json")
    assert json.loads(proc.stdout)["exit_code"] == 1
    assert "Not fixed" in proc.stderr  # the summary moves to stderr when stdout is the report


def test_diff_bad_inputs_and_help(tmp_path: Path) -> None:
    v1 = str(DIFF / "investigation-v1.json")
    assert_clean_error(leakhunt("diff", v1, str(DIFF / "memleak-v1.txt")))
    for scan in _scans(tmp_path):
        proc = leakhunt("diff", v1, str(scan))
        assert_clean_error(proc)
        assert "diff compares two investigations" in proc.stderr
    assert leakhunt("diff", v1, v1, "--format", "pdf").returncode == 2
    # A run that gathered nothing must not pass a CI gate as "fixed".
    v3 = jsonio.load(DIFF / "investigation-v3.json")
    assert isinstance(v3, Investigation)
    crashed = tmp_path / "crashed.json"
    with crashed.open("w") as fh:
        jsonio.dump(replace(v3, snapshots=v3.snapshots[:1], findings=()), fh)
    proc = leakhunt("diff", v1, str(crashed))
    assert_clean_error(proc)
    assert "too few to judge" in proc.stderr
    helptext = leakhunt("diff", "--help").stdout
    assert "Exit status" in helptext and "--fail-on" in helptext


def _gcc(version: int, out: Path) -> Path:
    exe = out / f"v{version}" / "fixleak"
    exe.parent.mkdir(parents=True)
    subprocess.run(
        [
            "gcc",
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            f"-DVERSION={version}",
            "-o",
            str(exe),
            str(ROOT / "tests" / "targets" / "fixleak.c"),
        ],
        check=True,
    )
    return exe


def _memleak() -> str:
    for path in ("/usr/sbin/memleak-bpfcc", "/usr/share/bcc/tools/memleak", "/usr/sbin/memleak"):
        if os.path.exists(path):
            return path
    raise AssertionError("probe_env said BCC memleak is installed")


def _watch(memleak: str, exes: dict[int, Path]) -> dict[int, tuple[int, str, str]]:
    """Run each build and BCC memleak on it side by side: build -> (pid, stdout, stderr)."""
    # The cache fills in 0.64 s (second argument 1), before memleak attaches; 1 s reports.
    targets = {v: subprocess.Popen([str(exe), "14", "1"]) for v, exe in exes.items()}
    probes = {
        v: subprocess.Popen(
            [memleak, "-p", str(t.pid), "1", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for v, t in targets.items()
    }
    try:
        outputs = {v: p.communicate(timeout=60) for v, p in probes.items()}
    finally:
        children: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = [
            *probes.values(),
            *targets.values(),
        ]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait()
    return {v: (targets[v].pid, out, err) for v, (out, err) in outputs.items()}


@pytest.mark.probe
def test_diff_of_real_leaky_and_fixed_builds(probe_env: None, tmp_path: Path) -> None:
    memleak = _memleak()
    exes = {v: _gcc(v, tmp_path) for v in (1, 3)}
    runs = _watch(memleak, exes)
    # A uprobe can fail to attach while another tool registers one at the same instant: retry once.
    failed = {v: exes[v] for v, (_, _, err) in runs.items() if "Failed to attach" in err}
    if failed:
        runs.update(_watch(memleak, failed))
    outputs = {v: (out, err) for v, (_, out, err) in runs.items()}
    pids = {v: pid for v, (pid, _, _) in runs.items()}
    paths = {}
    for v, (out, err) in outputs.items():
        stats = ParseStats()
        snapshots = tuple(parse_memleak(out.splitlines(), stats))
        assert len(snapshots) >= 4, err
        inv = Investigation(
            target=Target(pid=pids[v], comm="fixleak", cmdline=(str(exes[v]), "14", "1")),
            backend=BackendInfo(name="bcc", tool=memleak, version="", argv=(memleak, "-p", str(pids[v]))),
            run=RunInfo(
                started_at="2026-01-01T00:00:00+00:00", duration_s=snapshots[-1].t - snapshots[0].t + 1.0
            ),
            interval_s=1.0,
            snapshots=snapshots,
            findings=analyze_snapshots(snapshots),
            quality=stats.quality(),
        )
        paths[v] = tmp_path / f"v{v}.json"
        with paths[v].open("w") as fh:
            jsonio.dump(inv, fh)
    proc = leakhunt("diff", str(paths[1]), str(paths[3]), "--format", "json")
    data = json.loads(proc.stdout)
    fixed = {e["key"][0] for e in data["entries"] if e["status"] == "fixed"}
    assert {"parse_request", "open_session"} <= fixed, proc.stdout
    assert proc.returncode == 0, proc.stdout
    worse = leakhunt("diff", str(paths[3]), str(paths[1]))
    assert worse.returncode == 1
    assert "parse_request" in worse.stdout


def test_pprof_diff_base_of_the_two_builds(tmp_path: Path) -> None:
    """The differential view that diff's --help suggests: go tool pprof -diff_base per function."""
    for v in (1, 2):
        proc = leakhunt("report", str(DIFF / f"investigation-v{v}.json"), "-o", str(tmp_path / f"v{v}.pb.gz"))
        assert proc.returncode == 0, proc.stderr
    top = go_pprof(
        tmp_path / "v2.pb.gz", "-top", "-sample_index=growth_space", f"-diff_base={tmp_path / 'v1.pb.gz'}"
    )
    wanted = ("parse_request", "log_request")
    flat = {line.split()[-1]: line.split()[0] for line in top.splitlines() if line.strip().endswith(wanted)}
    assert flat["parse_request"].startswith("-")  # fixed: its growth is gone
    assert not flat["log_request"].startswith("-")  # new: growth appeared
