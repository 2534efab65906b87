"""``leakhunt agent``: keep scanning and serve leak suspects as Prometheus metrics (OpenMetrics)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from leakhunt.app.agent import AgentConfig, parse_listen, run_agent
from leakhunt.app.scan import accept_filter
from leakhunt.cli.common import SafeConsole, Seconds, Size
from leakhunt.errors import UsageError
from leakhunt.probe.tools import require_root
from leakhunt.report import make_output_dir
from leakhunt.sample import lookup_uid


@click.command(
    "agent",
    epilog="""\b
Examples:
  leakhunt agent --listen 127.0.0.1:9465              scrape http://127.0.0.1:9465/metrics
  leakhunt agent --listen :9465 --window 2h --top 10
  sudo leakhunt agent --listen 127.0.0.1:9465 --investigate-top 1 --escalate-rate 50M
""",
)
@click.option("--listen", required=True, metavar="ADDR:PORT", help="Where to serve /metrics (':PORT' = all).")
@click.option(
    "--interval",
    type=Seconds(min=0.05),
    default=10.0,
    show_default=True,
    help="Seconds between sweeps.",
)
@click.option(
    "--window",
    type=Seconds(min=1.0),
    default=3600.0,
    show_default=True,
    help="Seconds of history judged per process (older samples are dropped).",
)
@click.option(
    "--judge-every",
    type=Seconds(min=0.05),
    default=60.0,
    show_default=True,
    help="Seconds between two judgements of every trend (the metrics change then).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=1000),
    default=20,
    show_default=True,
    help="Suspects exported with per-process series (bounds the label cardinality).",
)
@click.option(
    "--name", "name_pattern", metavar="REGEX", help="Only processes whose name or command line match."
)
@click.option("--user", metavar="USER", help="Only processes of this user (name or uid).")
@click.option(
    "--min-growth",
    type=Size(),
    default="1M",
    show_default=True,
    metavar="SIZE",
    help="Growth over the window below SIZE is never a suspect.",
)
@click.option(
    "--investigate-top",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Investigate (eBPF, needs root) a leak-suspect among the N top ones once it grows faster than "
    "--escalate-rate; one probe at a time, each process once.",
)
@click.option(
    "--escalate-rate",
    type=Size(),
    default="10M",
    show_default=True,
    metavar="SIZE",
    help="Growth per hour that escalates a leak-suspect to an investigation.",
)
@click.option(
    "--investigate-duration",
    type=Seconds(min=1.0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Seconds of probing per investigation.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/agent"),
    show_default=True,
    help="Investigation reports go here, one folder each.",
)
@click.option(
    "--keep-reports",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="Keep the newest N investigation folders, delete older ones.",
)
@click.option(
    "--duration",
    type=Seconds(min=0.0),
    default=None,
    help="Stop after this many seconds (default: run until SIGINT/SIGTERM).",
)
def agent(
    *,
    listen: str,
    interval: float,
    window: float,
    judge_every: float,
    top: int,
    name_pattern: str | None,
    user: str | None,
    min_growth: int,
    investigate_top: int,
    escalate_rate: int,
    investigate_duration: float,
    output_dir: Path,
    keep_reports: int,
    duration: float | None,
) -> None:
    """Scan continuously and serve the leak suspects as Prometheus metrics.

    Every INTERVAL seconds the memory of every process is sampled (as `leakhunt scan` does); every
    JUDGE-EVERY seconds each process's last WINDOW seconds are judged, and the TOP suspects are served
    on /metrics (OpenMetrics when Prometheus asks for it): verdict, growth rate, fit quality,
    anon/RSS/VSZ/swap, labelled pid, comm and started (start time: pid + started survive pid reuse),
    plus the scan's health. Memory stays bounded however long it runs.
    """
    host, port = parse_listen(listen)
    name_re = None
    if name_pattern is not None:
        try:
            name_re = re.compile(name_pattern)
        except re.error as err:
            raise UsageError(f"--name: bad regular expression {name_pattern!r}: {err}") from None
    uid = None
    if user is not None:
        uid = lookup_uid(user)
        if uid is None:
            raise UsageError(f"--user: no such user {user!r}")
    if investigate_top:
        require_root()
        make_output_dir(output_dir)
    config = AgentConfig(
        host=host,
        port=port,
        interval=interval,
        window=window,
        judge_every=judge_every,
        top=top,
        min_growth_bytes=min_growth or 1,
        investigate_top=investigate_top,
        escalate_bytes_per_s=escalate_rate / 3600,
        investigate_duration=investigate_duration,
        output_dir=output_dir,
        keep_reports=keep_reports,
        duration=duration,
        accept=accept_filter(name_re, uid),
    )
    console = SafeConsole(stderr=True, highlight=False)
    sweeps = run_agent(config, lambda line: console.print(line, markup=False))
    console.print(f"stopped after {sweeps} sweeps", markup=False)
