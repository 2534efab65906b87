"""The agent's pure parts: sliding-window sample buffers, forgetting ended processes, the listen
address, and what the collector renders (read back with prometheus_client's own parser)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition, parser

from leakhunt.app.agent import outcome_of, parse_listen
from leakhunt.errors import UsageError
from leakhunt.model import MemSample, ProcessKey, ProcessTrend, TrendEvidence
from leakhunt.procfs import StatusMemory
from leakhunt.report.metrics import AgentCollector, AgentState
from leakhunt.sample import SeriesBuffer, Sweeper


def generate_openmetrics(registry: CollectorRegistry) -> bytes:
    out: bytes = exposition.generate_latest(registry)  # type: ignore[no-untyped-call]
    return out


def text_string_to_metric_families(text: str) -> list[Metric]:
    return list(parser.text_string_to_metric_families(text))  # type: ignore[no-untyped-call]


def mem(n: int) -> StatusMemory:
    return StatusMemory(vms=4 * n, rss=n, shared=0, swap=0)


def test_window_keeps_only_recent_samples_in_bounded_memory() -> None:
    buf = SeriesBuffer(capacity=64, window=100.0)
    for t in range(10_000):
        buf.add(float(t), mem(t))
    kept = buf.samples()
    assert kept[-1].t == 9999.0
    assert kept[0].t >= 9999.0 - 100.0  # nothing older than the window
    assert len(buf) <= 64
    assert buf.nbytes() < 64 * 5 * 8 * 2  # five columns of 8-byte values (with array slack)


def test_without_window_the_whole_scan_is_kept_thinned() -> None:
    buf = SeriesBuffer(capacity=64)
    for t in range(10_000):
        buf.add(float(t), mem(t))
    assert buf.samples()[0].t == 0.0


def test_forget_finished_drops_ended_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with Sweeper([child.pid]) as sweeper:
            sweeper.sweep()
            assert [s.alive for s in sweeper.series()] == [True]
            child.kill()
            child.wait()
            sweeper.sweep()
            assert [s.alive for s in sweeper.series()] == [False]
            sweeper.forget_finished()
            assert sweeper.series() == [] and sweeper.sampled == 0
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9465", ("127.0.0.1", 9465)), ("[::1]:80", ("::1", 80)), (":9465", ("0.0.0.0", 9465))],  # noqa: S104
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9465", "host:", "host:0", "host:70000", "host:port"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(text)


def trend(pid: int, name: str, verdict: str, slope: float) -> ProcessTrend:
    evidence = TrendEvidence(
        slope_bytes_per_sec=slope,
        slope_rss_bytes_per_sec=slope,
        slope_vms_bytes_per_sec=slope,
        trend_z=5.0,
        r2=0.98,
        growth_bytes=int(slope * 60),
        late_slope_ratio=1.0,
        drops=0,
        address_space_growth=False,
    )
    sample = MemSample(t=60.0, rss=50 << 20, vms=200 << 20, shared=10 << 20, swap=1 << 20)
    return ProcessTrend(
        key=ProcessKey(pid, 1_764_590_400.25),
        name=name,
        cmdline=(name,),
        username="root",
        verdict=verdict,  # type: ignore[arg-type]
        evidence=evidence,
        samples=(sample,),
    )


def state(*found: ProcessTrend) -> AgentState:
    return AgentState(
        suspects=found,
        suspects_total=len(found) + 3,
        judged=40,
        tracked=41,
        window_s=3600.0,
        sweeps=7,
        sweep_seconds=0.02,
        processes_read=41,
        processes_denied=2,
        sample_bytes=12345,
        investigations=(("ok", 1),),
    )


def test_collector_renders_suspects_and_health_as_openmetrics() -> None:
    collector = AgentCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    assert generate_latest(registry) == b""  # nothing before the first judgement
    # A hostile process name stays one label value.
    collector.update(
        state(trend(4242, 'evil"}\nx 1', "leak-suspect", 2048.0), trend(7, "java", "growing", 10.0))
    )
    text = generate_openmetrics(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    leak = {s.labels["pid"]: s for s in families["leakhunt_process_leak_suspect"].samples}
    assert leak["4242"].value == 1 and leak["7"].value == 0
    assert leak["4242"].labels == {"pid": "4242", "comm": 'evil"}\nx 1', "started": "1764590400"}
    growth = {s.labels["pid"]: s.value for s in families["leakhunt_process_growth_bytes_per_second"].samples}
    assert growth == {"4242": 2048.0, "7": 10.0}
    verdicts = {
        (s.labels["pid"], s.labels["leakhunt_process_verdict"]): s.value
        for s in families["leakhunt_process_verdict"].samples
    }
    assert verdicts[("4242", "leak-suspect")] == 1 and verdicts[("7", "growing")] == 1
    assert verdicts[("7", "leak-suspect")] == 0
    memory = {
        (s.labels["pid"], s.labels["kind"]): s.value
        for s in families["leakhunt_process_memory_bytes"].samples
    }
    assert memory[("4242", "anon")] == (40 << 20) + (1 << 20)
    assert memory[("4242", "vsz")] == 200 << 20
    assert families["leakhunt_scan_processes_denied"].samples[0].value == 2
    assert families["leakhunt_scan_suspects"].samples[0].value == 5
    (sweeps,) = families["leakhunt_scan_sweeps"].samples
    assert sweeps.name == "leakhunt_scan_sweeps_total" and sweeps.value == 7
    # A process that stops being a suspect disappears at the next scrape.
    collector.update(state())
    assert "leakhunt_process_leak_suspect{" not in generate_openmetrics(registry).decode()


def test_an_investigation_that_proves_nothing_is_not_counted_as_failed() -> None:
    # exit 4: the report was written but saw nothing or took too few snapshots (a 1 s escalation)
    assert [outcome_of(code) for code in (0, 4, 2, 3, 130, -9)] == [
        "ok",
        "inconclusive",
        "failed",
        "failed",
        "failed",
        "failed",
    ]
