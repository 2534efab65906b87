#!/usr/bin/env python3
"""Benchmark: does a long `leakhunt agent` run keep its memory flat?

Starts ``leakhunt agent`` on loopback (every process of the host, ``--interval``, a ``--window`` a
quarter of the run so the sliding window fills and turns over) while a churn of short-lived
processes comes and goes (``--churn`` new ``sleep`` processes a second, each living a few seconds:
the agent must forget every one of them), and scrapes the agent's /metrics like Prometheus would.
Every ``--every`` seconds it reads the agent's own RSS (/proc/PID/status) and the bytes its sample
buffers hold (``leakhunt_scan_sample_bytes``).

It prints the series, then the figures beside their anchor, the agent's RSS after warm-up:
RSS at warm-up, at the end, the Theil-Sen slope in MB/hour, and leakhunt's own scan verdict on
the agent's memory series (the same judgement the agent applies to every process).

Usage: .venv/bin/python scripts/bench_agent_memory.py [--minutes 60] [--interval 1] [--churn 20]
The 1-hour run is the goal; shorter runs (e.g. --minutes 10) give a first figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

from leakhunt.analyze.trend import judge
from leakhunt.model import MemSample


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_of(pid: int) -> tuple[int, int]:
    """(VmRSS, RssFile) in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("RssFile", 0) + fields.get("RssShmem", 0)


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback URL built here)
        for raw in resp.read().decode().splitlines():
            if raw.startswith("#") or "{" in raw or " " not in raw:
                continue
            name, value = raw.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0, help="agent --interval (seconds)")
    ap.add_argument("--churn", type=int, default=20, help="short-lived processes started per second")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between two memory readings")
    args = ap.parse_args()
    seconds = args.minutes * 60
    port = free_port()
    window = max(seconds / 4, 60.0)
    agent = subprocess.Popen(
        [
            sys.executable, "-m", "leakhunt", "agent", "--listen", f"127.0.0.1:{port}",
            "--interval", f"{args.interval:g}", "--judge-every", "10", "--window", f"{window:g}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    churn: list[subprocess.Popen[bytes]] = []
    readings: list[tuple[float, int, int, float, float]] = []
    start = time.monotonic()
    next_read = start + 5
    print(f"leakhunt agent pid {agent.pid}: {args.minutes:g} min, interval {args.interval:g} s, "
          f"window {window:g} s, churn {args.churn} processes/s")  # fmt: skip
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'anon MiB':>8} {'samples KiB':>11} {'tracked':>7} {'sweeps':>7}")
    try:
        while time.monotonic() - start < seconds:
            for _ in range(args.churn):
                churn.append(subprocess.Popen(["sleep", str(2 + len(churn) % 5)]))
            churn = [p for p in churn if p.poll() is None]
            now = time.monotonic()
            if now >= next_read:
                next_read = now + args.every
                rss, shared = rss_of(agent.pid)
                try:
                    m = scrape(url)
                except OSError:
                    m = {}
                held = m.get("leakhunt_scan_sample_bytes", float("nan"))
                tracked = m.get("leakhunt_scan_tracked_processes", float("nan"))
                readings.append((now - start, rss, rss - shared, held, tracked))
                print(f"{now - start:7.0f} {rss / 2**20:8.1f} {(rss - shared) / 2**20:8.1f} "
                      f"{held / 1024:11.1f} {tracked:7.0f} {m.get('leakhunt_scan_sweeps_total', 0):7.0f}",
                      flush=True)  # fmt: skip
            time.sleep(1)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        for p in churn:
            p.kill()
            p.wait()
    warm = [r for r in readings if r[0] >= min(120.0, seconds / 4)]
    if len(warm) < 2:
        print("too short a run to judge")
        return
    samples = [MemSample(t=t, rss=rss, vms=rss, shared=rss - anon) for t, rss, anon, _h, _n in warm]
    verdict = judge(samples)
    slope = verdict.evidence.slope_bytes_per_sec * 3600 / 1e6
    print()
    print(f"anchor: agent RSS after warm-up {warm[0][1] / 2**20:.1f} MiB (anon {warm[0][2] / 2**20:.1f} MiB)")
    print(
        f"at the end:                     {warm[-1][1] / 2**20:.1f} MiB (anon {warm[-1][2] / 2**20:.1f} MiB)"
    )
    print(f"anon growth after warm-up: {slope:+.2f} MB/hour (Theil-Sen); sample buffers "
          f"{warm[0][3] / 1024:.0f} -> {warm[-1][3] / 1024:.0f} KiB")  # fmt: skip
    print(f"leakhunt's verdict on its own agent: {verdict.verdict} ({verdict.evidence.note or 'no note'})")
    if os.environ.get("CI"):
        print("(informational: benchmarks are not assertions)")


if __name__ == "__main__":
    main()
