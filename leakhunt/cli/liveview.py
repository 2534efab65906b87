"""The live view of `investigate` and `run`: the current top stacks, refreshed at every snapshot.

On a terminal (stdout) it is a table redrawn in place with rich's Live, like ``py-spy top``::

    leakhunt: probing 42/600 s, 42 snapshots
     #  verdict    growth/s  outstanding  conf  stack (innermost first)
     1  leak      10.0 KiB/s   420.0 KiB  0.99  leaky_alloc+0x15 [leak_mix] <- main+0x6e [leak_mix]

When stdout is not a terminal (a pipe, a log file), one plain line per snapshot::

    leakhunt: 42.0 s, 42 snapshots: 1. leak leaky_alloc+0x15 [leak_mix] +10.0 KiB/s (420.0 KiB); 2. ...

Symbols come from the target: they are shown as text, never as rich markup.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import IO

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from leakhunt.app.investigate import Progress
from leakhunt.cli.common import SafeConsole
from leakhunt.model import Finding
from leakhunt.units import human_size

# frames shown per stack; redraws per second at most while attaching (every snapshot redraws)
FRAMES = 4
REFRESH_S = 0.25
PLAIN_TOP = 3


class LiveView:
    """Feed it the session's Progress; use as a context manager around the probing."""

    def __init__(
        self, out: IO[str] | None = None, *, top: int = 10, force_terminal: bool | None = None
    ) -> None:
        self.console = SafeConsole(file=out, highlight=False, force_terminal=force_terminal)
        self.top = top
        self.terminal = self.console.is_terminal
        self._live: Live | None = None
        self._last_draw = 0.0
        self._last_snapshots = -1

    def __enter__(self) -> LiveView:
        if self.terminal:
            self._live = Live(
                Text("leakhunt: starting"),
                console=self.console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, p: Progress) -> None:
        new_snapshot = p.snapshots != self._last_snapshots
        self._last_snapshots = p.snapshots
        if self._live is not None:
            now = time.monotonic()
            if new_snapshot or now - self._last_draw >= REFRESH_S:
                self._last_draw = now
                self._live.update(self.render(p), refresh=True)
        elif new_snapshot and p.status == "probing" and p.snapshots > 0:
            self.console.print(plain_line(p, PLAIN_TOP), markup=False, soft_wrap=True)

    def render(self, p: Progress) -> Group:
        head = Text(
            f"leakhunt: {p.status} {p.elapsed:.0f}/{p.duration:g} s, {p.snapshots} snapshots", style="bold"
        )
        if not p.leaders:
            note = "waiting for the second snapshot" if p.status == "probing" else ""
            return Group(head, Text(note))
        table = Table(show_header=True, header_style="bold", expand=False, box=None, pad_edge=False)
        table.add_column("#", justify="right")
        table.add_column("verdict")
        table.add_column("growth/s", justify="right")
        table.add_column("outstanding", justify="right")
        table.add_column("conf", justify="right")
        table.add_column("stack (innermost first)", overflow="ellipsis", no_wrap=True)
        for f in p.leaders[: self.top]:
            table.add_row(
                Text(str(f.rank)),
                Text(f.verdict),
                Text(human_size(f.growth_bytes_per_sec)),
                Text(human_size(f.outstanding_bytes)),
                Text(f"{f.confidence:.2f}"),
                Text(_frames(f)),
                style="red" if f.verdict == "leak" else None,
            )
        return Group(head, table)


def _frames(f: Finding) -> str:
    return " <- ".join(fr.display() for fr in f.stack.frames[:FRAMES]) or "[no stack]"


def plain_line(p: Progress, top: int = PLAIN_TOP) -> str:
    """One line for a log: time, snapshots, the first ``top`` stacks."""
    parts = [
        f"{f.rank}. {f.verdict} {f.stack.frames[0].display() if f.stack.frames else '[no stack]'} "
        f"{'+' if f.growth_bytes_per_sec >= 0 else '-'}{human_size(abs(f.growth_bytes_per_sec))}/s "
        f"({human_size(f.outstanding_bytes)})"
        for f in p.leaders[:top]
    ]
    stacks = "; ".join(parts) if parts else "no stack yet"
    return f"leakhunt: {p.elapsed:.1f} s, {p.snapshots} snapshots: {stacks}"
