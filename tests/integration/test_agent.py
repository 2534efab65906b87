"""`leakhunt agent` scraped by a real Prometheus (Debian's package) on loopback: the leaking target's
verdict and growth rate reach Prometheus, the steady one is not flagged, and the example alert rule
(examples/prometheus/leakhunt-rules.yml) fires for the leaker only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_or_skip
from tests.integration._probecli import probes_for

RULES = ROOT / "examples" / "prometheus" / "leakhunt-rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (a loopback http URL built here)
        return json.load(resp)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    doc = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def start_ready(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    return proc


def private_copy(built: Path, tmp_path: Path, name: str) -> str:
    """The target under a name of its own (comm is 15 characters), so that scan_* targets other test
    runs on this machine start at the same time are not in the agent's --name filter."""
    unique = f"{name}{os.getpid() % 100000}"[:15]
    return str(shutil.copy(built, tmp_path / unique))


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def prometheus_bin() -> Iterator[str]:
    found = shutil.which("prometheus")
    if found is None:
        require_or_skip("prometheus not installed (scripts/setup.sh --with-test-tools)")
    assert found is not None
    yield found


def test_prometheus_sees_the_leaker_and_the_rule_fires_for_it_only(
    prometheus_bin: str, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    # The rule as shipped, with its 15 minutes of `for` cut to none (the agent's window is short here).
    rules = RULES.read_text()
    assert "for: 15m" in rules
    (tmp_path / "rules.yml").write_text(rules.replace("for: 15m", "for: 0s"))
    agent_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n"
        f"  - {{job_name: leakhunt, static_configs: [{{targets: ['127.0.0.1:{agent_port}']}}]}}\n"
    )
    leak_exe = private_copy(build_target("scan_leak"), tmp_path, "agtleak")
    steady_exe = private_copy(build_target("scan_steady"), tmp_path, "agtsteady")
    leak_name, steady_name = Path(leak_exe).name, Path(steady_exe).name
    leaker = start_ready([leak_exe, "1024"])
    steady = start_ready([steady_exe])
    procs: list[subprocess.Popen[Any]] = [leaker, steady]
    try:
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "leakhunt", "agent", "--listen", f"127.0.0.1:{agent_port}",
                "--interval", "0.5", "--judge-every", "1", "--window", "120",
                "--name", f"^({leak_name}|{steady_name})$",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        procs.append(agent)
        prom_proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("w"),
        )
        procs.append(prom_proc)
        prom = f"http://127.0.0.1:{prom_port}"
        leak_pid, steady_pid = str(leaker.pid), str(steady.pid)

        def leaker_flagged() -> bool:
            try:
                found = query(prom, f'leakhunt_process_leak_suspect{{pid="{leak_pid}"}} == 1')
            except OSError:
                return False  # Prometheus still starting
            return bool(found)

        wait_for("Prometheus to see the leaker flagged", leaker_flagged, timeout=90)

        (rate,) = query(prom, f'leakhunt_process_growth_bytes_per_second{{pid="{leak_pid}"}}')
        assert rate["metric"]["comm"] == leak_name and rate["metric"]["job"] == "leakhunt"
        assert 0.5 * 2**20 < float(rate["value"][1]) < 1.5 * 2**20  # the target leaks 1 MiB/s
        (verdict,) = query(
            prom, f'leakhunt_process_verdict{{pid="{leak_pid}",leakhunt_process_verdict="leak-suspect"}}'
        )
        assert verdict["value"][1] == "1"
        assert query(prom, f'leakhunt_process_memory_bytes{{pid="{leak_pid}",kind="anon"}}')
        # Both were judged; the steady one never became a suspect, so it has no series at all.
        (judged,) = query(prom, "leakhunt_scan_judged_processes")
        assert judged["value"][1] == "2"
        assert query(prom, f'{{__name__=~"leakhunt_process_.*",pid="{steady_pid}"}}') == []
        (read,) = query(prom, "leakhunt_scan_processes_read")
        assert read["value"][1] == "2"

        def firing() -> list[dict[str, Any]]:
            alerts: list[dict[str, Any]] = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
            return [a for a in alerts if a["state"] == "firing"]

        wait_for("the alert to fire", lambda: bool(firing()), timeout=30)
        fired = firing()
        assert {a["labels"]["pid"] for a in fired} == {leak_pid}
        assert fired[0]["labels"]["alertname"] == "ProcessMemoryLeak"
        assert leak_name in fired[0]["annotations"]["summary"]
    finally:
        for proc in reversed(procs):
            stop(proc)
    assert agent.stderr is not None
    log = agent.stderr.read()
    assert f"serving metrics on http://127.0.0.1:{agent_port}/metrics" in log
    assert "Traceback" not in log


def test_example_rules_and_config_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_or_skip("promtool not installed (scripts/setup.sh --with-test-tools)")
    assert promtool is not None
    for what, path in (("rules", RULES), ("config", RULES.parent / "prometheus.yml")):
        done = subprocess.run(
            [promtool, "check", what, str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_agent_refuses_a_bad_or_busy_address() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "leakhunt", "agent", "--listen", "nonsense"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "is not ADDR:PORT" in bad.stderr and "Traceback" not in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "leakhunt", "agent", "--listen", f"127.0.0.1:{port}", "--duration", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode != 0 and "cannot serve on 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.probe
def test_escalation_probes_one_suspect_at_a_time_and_keeps_the_newest_reports(
    probe_env: None, build_target: Callable[[str], Path], tmp_path: Path
) -> None:
    leak_exe = private_copy(build_target("scan_leak"), tmp_path, "agtesc")
    leak_name = Path(leak_exe).name
    leakers = [start_ready([leak_exe, "1024"]) for _ in range(2)]
    port = free_port()
    out = tmp_path / "reports"
    agent = subprocess.Popen(
        [
            sys.executable, "-m", "leakhunt", "agent", "--listen", f"127.0.0.1:{port}",
            "--interval", "0.5", "--judge-every", "1", "--window", "120", "--name", f"^{leak_name}$",
            "--investigate-top", "2", "--escalate-rate", "1M", "--investigate-duration", "6",
            "--output-dir", str(out), "--keep-reports", "1", "--duration", "90",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    most_at_once = 0
    try:

        def both_done() -> bool:
            nonlocal most_at_once
            running = sum(len(probes_for(p.pid)) for p in leakers)
            most_at_once = max(most_at_once, running)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                return False
            return 'leakhunt_investigations_total{outcome="ok"} 2.0' in text

        deadline = time.monotonic() + 80
        while not both_done():
            assert time.monotonic() < deadline, "two investigations did not finish"
            time.sleep(0.2)
    finally:
        stop(agent)
        for p in leakers:
            stop(p)
    assert agent.stderr is not None
    log = agent.stderr.read()
    assert "Traceback" not in log, log
    assert most_at_once <= 1
    assert {f"investigating pid {p.pid} ({leak_name})" in log for p in leakers} == {True}, log
    (kept,) = [d for d in out.iterdir() if d.is_dir()]  # --keep-reports 1: the older folder is gone
    (report,) = kept.glob("*.json")
    doc = json.loads(report.read_text())
    assert doc["target"]["pid"] in {p.pid for p in leakers}
    assert doc["findings"] and doc["findings"][0]["verdict"] == "leak"
    assert list(kept.glob("*.pb.gz")), "the pprof export for Pyroscope/Parca is written too"
