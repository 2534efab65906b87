"""`leakhunt scan` on real processes: the scenario suite of issue 3.

All scenario targets (tests/targets/scan_*.c) run together under ONE 30 s scan at 1 s (the issue's
setting), started as a user would start it (``python -m leakhunt scan ... --json``); each test then
checks what that scan said about one target. Scans need no root and no eBPF, so these always run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from leakhunt.model import SCHEMA_VERSION
from leakhunt.report.views import human_duration
from tests.conftest import require_or_skip

ROOT = Path(__file__).resolve().parents[2]

# name -> (target, args, expected verdict)
SCENARIOS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "steady": ("scan_steady", (), "stable"),
    "leak-256k": ("scan_leak", ("256",), "leak-suspect"),
    "leak-1m": ("scan_leak", ("1024",), "leak-suspect"),
    "leak-4m": ("scan_leak", ("4096",), "leak-suspect"),
    # 16 KiB/s: 480 KiB in the 30 s scan, under the 1 MiB minimum growth, but ~56 MiB an hour on a
    # clean line: a suspect to confirm with a longer scan, never "stable"
    "slow-leak-16k": ("scan_leak", ("16",), "growing"),
    "cache": ("scan_cache", ("8",), "plateau"),
    "sawtooth": ("scan_sawtooth", (), "sawtooth"),
    "sawtooth-rising-floor": ("scan_sawtooth", ("512",), "leak-suspect"),
    "address-space": ("scan_vsz", (), "stable"),
    # A process may name itself anything (argv[0], prctl): the reports must escape it.
    "hostile-name": ("scan_steady", (), "stable"),
}
HOSTILE = "<img src=x>"


@dataclass(frozen=True)
class ScanRun:
    doc: dict[str, object]
    pids: dict[str, int]
    stderr: str
    reports: Path

    def process(self, scenario: str) -> dict[str, object]:
        procs = self.doc["processes"]
        assert isinstance(procs, list)
        found = [p for p in procs if p["pid"] == self.pids[scenario]]
        assert len(found) == 1, f"{scenario}: pid {self.pids[scenario]} not in the scan"
        return found[0]  # type: ignore[no-any-return]


def start(binary: Path, *args: str, user: int | None = None) -> subprocess.Popen[bytes]:
    """Start a target and wait for its "ready" line (its setup is done before the scan starts)."""
    proc = subprocess.Popen(
        [str(binary), *args],
        stdout=subprocess.PIPE,
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(b"ready"), line
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def scenario_scan(
    build_target: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScanRun]:
    procs: list[subprocess.Popen[bytes]] = []
    pids: dict[str, int] = {}
    tmp = tmp_path_factory.mktemp("scan")
    reports = tmp / "reports"
    try:
        for scenario, (target, args, _) in SCENARIOS.items():
            binary = build_target(target)
            if scenario == "hostile-name":
                binary = Path(shutil.copy(binary, tmp / HOSTILE))
            proc = start(binary, *args)
            procs.append(proc)
            pids[scenario] = proc.pid
        argv = [sys.executable, "-m", "leakhunt", "scan", "--duration", "30", "--interval", "1", "--json"]
        argv += ["--output-dir", str(reports), "--format", "html,md,json"]
        for pid in pids.values():
            argv += ["--pid", str(pid)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=90, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr
        yield ScanRun(json.loads(done.stdout), pids, done.stderr, reports)
    finally:
        stop(procs)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_verdict(scenario_scan: ScanRun, scenario: str) -> None:
    """Every leaker (>= 256 KiB/s) is a leak-suspect, the slow one at least growing; the others each
    get their own verdict."""
    proc = scenario_scan.process(scenario)
    expected = SCENARIOS[scenario][2]
    evidence = proc["evidence"]
    assert isinstance(evidence, dict)
    assert proc["verdict"] == expected, f"{scenario}: {proc['verdict']} ({evidence['note']})"
    # Every verdict carries the numbers behind it.
    assert evidence["note"]
    for field in ("slope_bytes_per_sec", "trend_z", "r2", "growth_bytes", "late_slope_ratio", "drops"):
        assert isinstance(evidence[field], int | float), field


def test_leak_rates_are_measured(scenario_scan: ScanRun) -> None:
    for scenario, kib in (("leak-256k", 256), ("leak-1m", 1024), ("leak-4m", 4096)):
        evidence = scenario_scan.process(scenario)["evidence"]
        assert isinstance(evidence, dict)
        rate = evidence["slope_bytes_per_sec"]
        assert isinstance(rate, float)
        assert 0.8 * kib * 1024 <= rate <= 1.2 * kib * 1024, (scenario, rate)


def test_address_space_flag_only_on_the_reserver(scenario_scan: ScanRun) -> None:
    for scenario in SCENARIOS:
        evidence = scenario_scan.process(scenario)["evidence"]
        assert isinstance(evidence, dict)
        assert evidence["address_space_growth"] is (scenario == "address-space"), scenario


def test_sawtooth_is_judged_on_its_troughs(scenario_scan: ScanRun) -> None:
    flat = scenario_scan.process("sawtooth")["evidence"]
    rising = scenario_scan.process("sawtooth-rising-floor")["evidence"]
    assert isinstance(flat, dict) and isinstance(rising, dict)
    assert flat["drops"] >= 3 and rising["drops"] >= 3
    assert "lower envelope" in flat["note"] and "floor keeps rising" in rising["note"]


def test_json_has_what_the_issue_asks(scenario_scan: ScanRun) -> None:
    doc = scenario_scan.doc
    assert doc["schema_version"] == SCHEMA_VERSION and doc["kind"] == "scan"
    proc = scenario_scan.process("leak-1m")
    for field in ("pid", "create_time", "name", "cmdline", "verdict", "evidence", "samples"):
        assert field in proc, field
    assert proc["name"] == "scan_leak" and proc["cmdline"][1:] == ["1024"]  # type: ignore[index]
    samples = proc["samples"]  # schema v2: parallel arrays
    assert isinstance(samples, dict) and len(samples["t"]) >= 30
    # Keyed by (pid, start time): create_time is the process's real start, as psutil computes it.
    with open(f"/proc/{proc['pid']}/stat", "rb") as fh:
        stat = fh.read()
    start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    with open("/proc/stat") as fh:
        btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
    assert proc["create_time"] == pytest.approx(btime + start_ticks / os.sysconf("SC_CLK_TCK"), abs=0.01)
    # The table (stderr under --json) points at the next step.
    assert f"leakhunt investigate {proc['pid']}" in scenario_scan.stderr
    assert "could not read 0 processes" in scenario_scan.stderr


def test_reports_chart_every_suspect_with_its_evidence(scenario_scan: ScanRun) -> None:
    [html] = scenario_scan.reports.glob("leakhunt-scan-*.html")
    [md] = scenario_scan.reports.glob("leakhunt-scan-*.md")
    [saved] = scenario_scan.reports.glob("leakhunt-scan-*.json")
    assert json.loads(saved.read_text())["processes"] == scenario_scan.doc["processes"]
    page = html.read_text()
    text = md.read_text()
    for scenario in SCENARIOS:
        proc = scenario_scan.process(scenario)
        pid, verdict = proc["pid"], proc["verdict"]
        if verdict == "stable":
            continue
        # The suspect's own section: a chart of its trend (inline SVG), its verdict and its numbers.
        section = page[page.index(f'<article class="process" id="pid-{pid}">') :]
        section = section[: section.index("</article>")]
        assert f'<svg class="chart line-chart" id="chart-{pid}"' in section, scenario
        assert f">{verdict}" in section and "Mann-Kendall z" in section and "Theil-Sen" in section
        md_section = text[text.index(f"(pid {pid}): {verdict}") :]
        md_section = md_section[: md_section.find("\n### ")]
        assert "why: " in md_section and any(ch in md_section for ch in "▁▂▃▄▅▆▇█"), scenario
    assert "sudo leakhunt investigate" in page and "sudo leakhunt investigate" in text
    # Hostile names are text, never markup.
    assert HOSTILE not in page and "&lt;img src=x&gt;" in page
    # In Markdown it may only appear as inline code, where it is inert.
    assert text.count(HOSTILE) == text.count(f"`{HOSTILE}`") > 0


def test_scan_without_root_counts_what_it_cannot_read(
    build_target: Callable[..., Path], tmp_path: Path
) -> None:
    """As an ordinary user on a /proc mounted with hidepid=1 (other users' processes deny access):
    the scan still samples the user's own leaker and says how many it could not read and why."""
    require_or_skip(None if os.geteuid() == 0 else "needs root to mount a hidepid /proc and switch user")
    nobody = 65534
    leaker = start(build_target("scan_leak"), "2048", user=nobody)
    try:
        scan = (
            f"mount -t proc -o hidepid=1 proc /proc && exec setpriv --reuid={nobody} --regid={nobody} "
            f"--clear-groups {sys.executable} -m leakhunt scan --duration 8 --interval 1 --json"
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", scan],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",  # not writable by nobody: --json alone must not try to write report files
            check=False,
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["unreadable"] > 0
        assert dict(doc["unreadable_reasons"]).get("permission denied") == doc["unreadable"]
        assert f"could not read {doc['unreadable']} processes (permission denied" in done.stderr
        mine = [p for p in doc["processes"] if p["pid"] == leaker.pid]
        assert mine and mine[0]["verdict"] == "leak-suspect"
    finally:
        stop([leaker])


def test_bad_options_are_clear_errors() -> None:
    for args, message in (
        (["--pid", "999999999"], "no such process"),
        (["--name", "("], "bad regular expression"),
        (["--min-rss", "lots"], "is not a size"),
        (["--user", "no-such-user-xyz"], "no such user"),
        (["--format", "pprof"], "no call stacks"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "leakhunt", "scan", "--duration", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_processes_that_come_and_go_never_break_the_scan() -> None:
    """Short-lived processes and a zombie appear and vanish all through a whole-host scan."""
    churn = subprocess.Popen(["sh", "-c", "while :; do sleep 0.2 & sleep 0.02; done"])
    zombie_parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os,time\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid,flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert zombie_parent.stdout is not None
        zombie = int(zombie_parent.stdout.readline())
        done = subprocess.run(
            [sys.executable, "-m", "leakhunt", "scan", "--duration", "4", "--interval", "0.5", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        churn.kill()
        zombie_parent.kill()
        churn.wait()
        zombie_parent.wait()
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    procs = doc["processes"]
    # Dozens of sleeps came and went: each is its own (pid, create_time) series, none broke the scan.
    assert sum(p["name"] == "sleep" for p in procs) >= 10
    keys = [(p["pid"], p["create_time"]) for p in procs]
    assert len(keys) == len(set(keys))
    assert doc["sampled"] >= len(procs)
    assert zombie not in [p["pid"] for p in procs], "a zombie has no memory to sample"


@pytest.mark.probe
def test_investigate_top_links_scan_evidence_to_the_growing_stack(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path
) -> None:
    """--investigate-top probes only the suspects (here: the one leaker, not the steady process) and
    writes one report where the scan's growth leads to the stack that makes it."""
    leaker = start(build_target("scan_leak"), "1024")
    steady = start(build_target("scan_steady"))
    try:
        argv = [sys.executable, "-m", "leakhunt", "scan", "--pid", str(leaker.pid), "--pid", str(steady.pid)]
        argv += ["--duration", "8", "--investigate-top", "2", "--investigate-duration", "6"]
        argv += ["--output-dir", str(tmp_path), "--format", "html,md,json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    finally:
        stop([leaker, steady])
    assert done.returncode == 0, done.stderr
    [saved] = tmp_path.glob("leakhunt-scan-*.json")
    doc = json.loads(saved.read_text())
    assert len(doc["investigations"]) == 1, done.stderr
    [inv] = doc["investigations"]  # the steady process is no suspect: not probed
    assert inv["target"]["pid"] == leaker.pid
    top = inv["findings"][0]
    # the innermost frame that is not an inlined helper (alloc_touched is inlined into leak_block
    # and, with source lines, shown as its own frame)
    outer = [f for f in top["frames"] if "inlined)" not in f]
    assert top["verdict"] == "leak" and outer[0].startswith("leak_block"), top["frames"][:3]
    assert top["growth_bytes_per_sec"] == pytest.approx(1024 * 1024, rel=0.2)
    page = next(tmp_path.glob("leakhunt-scan-*.html")).read_text()
    article = page[page.index(f'<article class="investigation" id="inv-{leaker.pid}">') :]
    assert "leak_block" in article[: article.index("</article>")]
    assert f'href="#inv-{leaker.pid}"' in page  # from the scan's trend section down to the stacks
    text = next(tmp_path.glob("leakhunt-scan-*.md")).read_text()
    assert f"### Investigation pid {leaker.pid}" in text and "of the growth the scan measured" in text


REUSE_SCRIPT = """
import json, os, subprocess, time
from leakhunt.sample import Sweeper
first = subprocess.Popen(["sleep", "60"])
time.sleep(0.05)
with Sweeper(exclude={os.getpid()}) as sweeper:
    sweeper.sweep(); sweeper.sweep()
    first.kill(); first.wait()
    time.sleep(0.05)  # a later clock tick: the newcomer's start time differs
    with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
        fh.write(str(first.pid - 1))  # the next process gets the same pid
    second = subprocess.Popen(["python3", "-c", "import time; x = bytearray(64 << 20); time.sleep(60)"])
    time.sleep(0.5)
    sweeper.sweep(); sweeper.sweep()
    out = [[s.key.pid, s.key.create_time, [m.rss for m in s.samples], s.alive] for s in sweeper.series()]
    second.kill(); second.wait()
print(json.dumps({"first": first.pid, "second": second.pid, "series": out}))
"""


def test_a_reused_pid_never_merges_two_processes() -> None:
    """In a fresh PID namespace, a process exits and the next one is given its pid (ns_last_pid):
    the sweep keeps two series, each with its own start time and only its own samples."""
    require_or_skip(None if os.geteuid() == 0 else "needs root for a PID namespace")
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", REUSE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == out["second"]
    same = [s for s in out["series"] if s[0] == out["first"]]
    assert len(same) == 2, same
    (old_ct, old_rss, old_alive), (new_ct, new_rss, new_alive) = sorted((s[1], s[2], s[3]) for s in same)
    assert old_ct < new_ct and not old_alive and new_alive
    assert len(old_rss) == 2 and len(new_rss) == 2  # the newcomer is sampled in the very sweep it is met
    assert max(old_rss) < 16 << 20 < min(new_rss)  # sleep's samples never mixed with the 64 MiB process


LONG = ("--duration", "600", "--json")


def test_ctrl_c_and_sigterm_stop_the_scan_and_keep_the_data(
    build_target: Callable[..., Path], tmp_path: Path
) -> None:
    leaker = start(build_target("scan_leak"), "1024")
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            reports = tmp_path / sig.name
            scan = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "leakhunt",
                    "scan",
                    "--pid",
                    str(leaker.pid),
                    "--pid",
                    "999999999",
                    *LONG,
                    "--output-dir",
                    str(reports),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(4)
            scan.send_signal(sig)
            out, err = scan.communicate(timeout=30)
            assert scan.returncode == 0, err
            doc = json.loads(out)
            assert doc["duration_s"] < 60
            [proc] = doc["processes"]
            assert proc["pid"] == leaker.pid and len(proc["samples"]["t"]) >= 3
            assert "(interrupted; 600 s planned)" in err and "pid 999999999: no such process" in err
            # What was stopped says so in every output, not only on the terminal.
            assert doc["stop_reason"] == "interrupted" and doc["planned_duration_s"] == 600
            saved = json.loads(next(reports.glob("*.json")).read_text())
            assert saved["stop_reason"] == "interrupted" and saved["duration_s"] == doc["duration_s"]
            took = human_duration(doc["duration_s"])
            note = (
                f"Interrupted after {took} of the planned 10 min 00 s: "
                "verdicts use the samples gathered so far."
            )
            html = next(reports.glob("*.html")).read_text()
            assert f'<p class="partial" id="partial">{note}</p>' in html
            assert "leakhunt scan --duration 600 " in html  # reproduce the planned window
            md = next(reports.glob("*.md")).read_text()
            assert f"> {note}" in md and "(interrupted, 10 min 00 s planned)" in md
    finally:
        stop([leaker])


def test_name_and_min_rss_filters(build_target: Callable[..., Path], tmp_path: Path) -> None:
    # Names of their own: other tests' targets may still be running.
    small = start(Path(shutil.copy(build_target("scan_steady"), tmp_path / "flt_small")))  # ~5 MiB RSS
    big = start(Path(shutil.copy(build_target("scan_leak"), tmp_path / "flt_big")), "65536")  # 64 MiB/s
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "leakhunt",
                "scan",
                "--name",
                "^flt_(small|big)$",
                "--min-rss",
                "32M",
                "--duration",
                "1",
                "--interval",
                "0.5",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop([small, big])
    assert done.returncode == 0, done.stderr
    pids = [p["pid"] for p in json.loads(done.stdout)["processes"]]
    assert pids == [big.pid]  # the name excludes everything else, --min-rss the small one
