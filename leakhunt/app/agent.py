"""``leakhunt agent``: scan forever with bounded memory, serve the suspects as Prometheus metrics and,
when asked, escalate the worst suspects to an eBPF investigation, one at a time.

The loop: a sweep every ``interval``; every ``judge_every`` seconds the processes' last ``window``
seconds are judged (``analyze.trend``) and the top suspects become the served ``AgentState``.
Memory stays bounded: each process keeps at most ``capacity`` samples of the last ``window``
seconds, processes that ended are forgotten after each judgement, and only the top ``top`` suspects
are exported (label cardinality). The HTTP server is prometheus_client's (a daemon thread).

Escalation (``investigate_top`` > 0): a leak-suspect among the top ``investigate_top`` whose growth
is at least ``escalate_bytes_per_s`` is investigated by a ``leakhunt investigate`` child (the one
subprocess runner: SIGINT then SIGKILL on stop, never outliving the agent), at most one at a time,
once per process (pid + start time). Each investigation writes its reports into its own folder under
``output_dir``; only the newest ``keep_reports`` folders are kept.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.process_collector import ProcessCollector

from leakhunt.analyze.trend import SUSPECT_VERDICTS, judge_all
from leakhunt.errors import EXIT_OK, EXIT_SAW_NOTHING, UsageError
from leakhunt.interrupt import sigterm_as_interrupt
from leakhunt.model import ProcessKey, ProcessTrend
from leakhunt.probe import runner
from leakhunt.report.metrics import AgentCollector, AgentState
from leakhunt.sample import Candidate, Sweeper, SweepStats, describe


def outcome_of(code: int) -> str:
    """The ``outcome`` label of an investigation that exited with ``code``: ok, inconclusive (it
    ran, but its report proves nothing: nothing seen, or too few snapshots) or failed."""
    if code == EXIT_OK:
        return "ok"
    return "inconclusive" if code == EXIT_SAW_NOTHING else "failed"


@dataclass(frozen=True)
class AgentConfig:
    host: str
    port: int
    interval: float = 10.0
    window: float = 3600.0
    judge_every: float = 60.0
    top: int = 20
    min_growth_bytes: int = 1 << 20
    capacity: int = 256
    investigate_top: int = 0
    escalate_bytes_per_s: float = 10e6 / 3600  # 10 MB/h, Coroot's default alert threshold
    investigate_duration: float = 30.0
    output_dir: Path = Path("reports")
    keep_reports: int = 10
    duration: float | None = None  # stop after this many seconds (None: until SIGINT/SIGTERM)
    accept: Callable[[Candidate], bool] | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9465"`` / ``"[::1]:9465"`` / ``":9465"`` (all addresses) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--listen: {text!r} is not ADDR:PORT", hint="e.g. --listen 127.0.0.1:9465")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (an empty ADDR asks for every address)
    return host, int(port_text)


@dataclass
class Escalator:
    """At most one ``leakhunt investigate`` child at a time; each process investigated once."""

    config: AgentConfig
    say: Callable[[str], None]
    child: runner.Child | None = None
    current: ProcessKey | None = None
    current_dir: Path | None = None
    done: set[ProcessKey] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=dict)

    def poll(self) -> None:
        """Relay the running investigation's output; note its end."""
        self._reap()

    def consider(self, found: tuple[ProcessTrend, ...], alive: set[ProcessKey]) -> None:
        """Start an investigation of the worst suspect that qualifies, unless one is running."""
        self._reap()
        self.done &= alive  # forget processes that ended (bounded)
        if self.child is not None or not self.config.investigate_top:
            return
        for trend in found[: self.config.investigate_top]:
            if (
                trend.verdict == "leak-suspect"
                and trend.evidence.slope_bytes_per_sec >= self.config.escalate_bytes_per_s
                and trend.key not in self.done
            ):
                self._start(trend)
                return

    def _start(self, trend: ProcessTrend) -> None:
        self.done.add(trend.key)
        info = describe(trend.key.pid)
        if info is None or abs(info.create_time - trend.key.create_time) > 1.0:
            self._count("gone")
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in trend.name)[:32] or "process"
        folder = self.config.output_dir / f"{stamp}-{safe}-{trend.key.pid}"
        folder.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "leakhunt", "investigate", str(trend.key.pid),
            "--duration", f"{self.config.investigate_duration:g}",
            "--interval", f"{min(5.0, max(1.0, self.config.investigate_duration / 6)):g}",
            "--output-dir", str(folder), "--format", "html,md,json,pprof",
        ]  # fmt: skip
        self.say(
            f"investigating pid {trend.key.pid} ({trend.name}) for {self.config.investigate_duration:g} s"
        )
        self.child = runner.Child(argv, name="leakhunt investigate", merge_stderr=True)
        self.current, self.current_dir = trend.key, folder
        self._prune()

    def _reap(self) -> None:
        if self.child is None:
            return
        for line in self.child.drain():
            self.say(f"  {line.rstrip()}")
        code = self.child.poll()
        if code is None:
            return
        outcome = outcome_of(code)
        self._count(outcome)
        pid = self.current.pid if self.current else "?"
        self.say(f"investigation of pid {pid}: {outcome} (exit status {code}) -> {self.current_dir}")
        self.child = None

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _prune(self) -> None:
        """Keep the newest ``keep_reports`` investigation folders (names start with a UTC time)."""
        root = self.config.output_dir
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name[:8].isdigit())
        for old in folders[: max(len(folders) - self.config.keep_reports, 0)]:
            shutil.rmtree(old, ignore_errors=True)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self._reap()


def judge(sweeper: Sweeper, config: AgentConfig) -> tuple[tuple[ProcessTrend, ...], int, set[ProcessKey]]:
    """(ranked suspects among living processes, processes judged, keys of the living)."""
    living = [s for s in sweeper.series() if s.alive]
    sweeper.forget_finished()
    trends = judge_all(living, min_growth_bytes=config.min_growth_bytes)
    found = tuple(t for t in trends if t.verdict in SUSPECT_VERDICTS)
    return found, len(trends), {s.key for s in living}


def run_agent(config: AgentConfig, say: Callable[[str], None]) -> int:
    """Serve until the duration ends or SIGINT/SIGTERM; returns the number of sweeps done."""
    registry = CollectorRegistry()
    collector = AgentCollector()
    registry.register(collector)
    registry.register(ProcessCollector(registry=None))  # the agent's own memory and CPU
    try:
        server, thread = start_http_server(config.port, addr=config.host, registry=registry)
    except OSError as err:
        raise UsageError(
            f"cannot serve on {config.host}:{config.port}: {err.strerror or err}",
            hint="choose another --listen address or port",
        ) from None
    say(f"serving metrics on http://{config.host}:{config.port}/metrics")
    escalator = Escalator(config, say)
    start = time.monotonic()
    sweeps = 0
    next_judge = start + min(config.judge_every, config.window)
    found: tuple[ProcessTrend, ...] = ()
    judged = 0
    try:
        with (
            sigterm_as_interrupt(),
            Sweeper(
                accept=config.accept, exclude={os.getpid()}, capacity=config.capacity, window=config.window
            ) as sweeper,
        ):
            while config.duration is None or time.monotonic() - start < config.duration:
                delay = start + sweeps * config.interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                stats: SweepStats = sweeper.sweep()
                sweeps += 1
                now = time.monotonic()
                if now >= next_judge:
                    next_judge = now + config.judge_every
                    found, judged, alive = judge(sweeper, config)
                    escalator.consider(found, alive)
                else:
                    escalator.poll()
                collector.update(
                    AgentState(
                        suspects=found[: config.top],
                        suspects_total=len(found),
                        judged=judged,
                        tracked=sweeper.tracked_count,
                        window_s=config.window,
                        sweeps=sweeps,
                        sweep_seconds=stats.wall_s,
                        processes_read=stats.sampled,
                        processes_denied=sum(n for _, n in stats.unreadable),
                        sample_bytes=sweeper.held_bytes(),
                        investigations=tuple(sorted(escalator.outcomes.items())),
                        investigating=escalator.child is not None,
                    )
                )
    except KeyboardInterrupt:
        say("stopping")
    finally:
        escalator.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return sweeps
