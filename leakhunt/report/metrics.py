"""OpenMetrics for Prometheus from the state of ``leakhunt agent``, with the official client library.

One ``AgentState`` (frozen) is the whole truth at a moment; ``AgentCollector.collect()`` renders the
latest one on every scrape, so a process that stops being a suspect disappears at once (no stale label
sets linger as they would with long-lived labelled gauges). Per-process series exist only for the top
``--top`` suspects, which bounds the label cardinality whatever the host runs.

Per suspect, labels ``pid``, ``comm`` and ``started`` (its start time, Unix seconds: with the pid, an
identity that survives pid reuse)::

    leakhunt_process_leak_suspect{pid="4242",comm="scan_leak",started="1764590400"} 1
    leakhunt_process_verdict{...,leakhunt_process_verdict="leak-suspect"} 1   (a state set)
    leakhunt_process_growth_bytes_per_second{...} 262144.0
    leakhunt_process_fit_r2{...} 0.99
    leakhunt_process_memory_bytes{...,kind="anon"|"rss"|"vsz"|"swap"} ...

Scan health: ``leakhunt_scan_processes_read``, ``leakhunt_scan_processes_denied``,
``leakhunt_scan_sweep_seconds``, ``leakhunt_scan_sweeps_total``, ``leakhunt_scan_suspects``, ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from leakhunt.model import ProcessTrend, ScanVerdict

VERDICTS: tuple[ScanVerdict, ...] = ("leak-suspect", "growing", "sawtooth", "plateau", "stable")
PROCESS_LABELS = ("pid", "comm", "started")


@dataclass(frozen=True)
class AgentState:
    """What the agent knows after its latest judgement."""

    suspects: tuple[ProcessTrend, ...]  # the exported ones: top-N, ranked
    suspects_total: int  # all suspects (leak-suspect or growing), exported or not
    judged: int  # processes judged in the latest judgement
    tracked: int  # processes being sampled
    window_s: float  # seconds of history each judgement looks at
    sweeps: int  # sweeps since the agent started
    sweep_seconds: float  # wall time of the latest sweep
    processes_read: int  # processes sampled by the latest sweep
    processes_denied: int  # processes that denied access in the latest sweep
    sample_bytes: int  # bytes held by the kept samples (the bounded-memory figure)
    investigations: tuple[tuple[str, int], ...] = ()  # (outcome, count) since the start
    investigating: bool = False  # a probe is running now


def process_labels(trend: ProcessTrend) -> list[str]:
    return [str(trend.key.pid), trend.name, str(int(trend.key.create_time))]


class AgentCollector(Collector):
    """A collector that renders the latest ``AgentState`` (set by the agent's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: AgentState | None = None

    def update(self, state: AgentState) -> None:
        with self._lock:
            self._state = state

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            state = self._state
        if state is None:
            return
        yield from scan_health(state)
        yield from suspect_metrics(state.suspects)


def scan_health(state: AgentState) -> Iterator[Metric]:
    def gauge(name: str, doc: str, value: float, unit: str = "") -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, value=value, unit=unit)

    yield gauge(
        "leakhunt_scan_processes_read", "Processes sampled by the latest sweep.", state.processes_read
    )
    yield gauge(
        "leakhunt_scan_processes_denied",
        "Processes that denied access in the latest sweep (run the agent as root to include them).",
        state.processes_denied,
    )
    yield gauge("leakhunt_scan_tracked_processes", "Processes being sampled.", state.tracked)
    yield gauge("leakhunt_scan_judged_processes", "Processes judged in the latest judgement.", state.judged)
    yield gauge(
        "leakhunt_scan_sweep_seconds", "Wall time of the latest sweep.", state.sweep_seconds, unit="seconds"
    )
    yield gauge("leakhunt_scan_window_seconds", "History judged per process.", state.window_s, unit="seconds")
    yield gauge(
        "leakhunt_scan_suspects",
        "Processes judged leak-suspect or growing (all of them; only the top ones get series).",
        state.suspects_total,
    )
    yield gauge(
        "leakhunt_scan_sample_bytes",
        "Bytes held by the kept memory samples.",
        state.sample_bytes,
        unit="bytes",
    )
    sweeps = CounterMetricFamily("leakhunt_scan_sweeps", "Sweeps since the agent started.")
    sweeps.add_metric([], state.sweeps)
    yield sweeps
    probes = CounterMetricFamily(
        "leakhunt_investigations", "Escalated eBPF investigations, by outcome.", labels=["outcome"]
    )
    for outcome, count in state.investigations:
        probes.add_metric([outcome], count)
    yield probes
    yield gauge("leakhunt_investigation_running", "1 while a probe runs.", int(state.investigating))


def suspect_metrics(found: tuple[ProcessTrend, ...]) -> Iterator[Metric]:
    labels = list(PROCESS_LABELS)
    leak = GaugeMetricFamily(
        "leakhunt_process_leak_suspect",
        "1 when the process's verdict is leak-suspect (sustained growth, not flattening), else 0.",
        labels=labels,
    )
    verdict = StateSetMetricFamily("leakhunt_process_verdict", "The scan verdict.", labels=labels)
    growth = GaugeMetricFamily(
        "leakhunt_process_growth_bytes_per_second",
        "Theil-Sen slope of anonymous memory plus swap over the window.",
        labels=labels,
    )
    r2 = GaugeMetricFamily("leakhunt_process_fit_r2", "Quality of the fitted trend, 0..1.", labels=labels)
    trend_z = GaugeMetricFamily(
        "leakhunt_process_trend_z", "Mann-Kendall z statistic (monotonic trend strength).", labels=labels
    )
    memory = GaugeMetricFamily(
        "leakhunt_process_memory_bytes",
        "Latest memory sample: anon (anonymous resident + swap), rss, vsz, swap.",
        labels=[*labels, "kind"],
        unit="bytes",
    )
    for trend in found:
        values = process_labels(trend)
        leak.add_metric(values, int(trend.verdict == "leak-suspect"))
        verdict.add_metric(values, {v: trend.verdict == v for v in VERDICTS})
        growth.add_metric(values, trend.evidence.slope_bytes_per_sec)
        r2.add_metric(values, trend.evidence.r2)
        trend_z.add_metric(values, trend.evidence.trend_z)
        last = trend.samples[-1]
        memory.add_metric([*values, "anon"], last.anon)
        memory.add_metric([*values, "rss"], last.rss)
        memory.add_metric([*values, "vsz"], last.vms)
        if last.swap is not None:
            memory.add_metric([*values, "swap"], last.swap)
    yield from (leak, verdict, growth, r2, trend_z, memory)
