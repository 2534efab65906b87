"""Ctrl-C, SIGTERM and SIGHUP while leakhunt gathers data: one stop, the data kept.

Every command that gathers (investigate, run, trace, scan, agent, import) stops the same way: the
first signal stops the gathering, a second one is ignored with a note, so the report of what was
gathered is written whatever the user presses meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


class Interruption:
    """What ``sigterm_as_interrupt`` saw: ``asked`` once a stop signal (Ctrl-C, SIGTERM, SIGHUP)
    came."""

    def __init__(self) -> None:
        self.asked = False
        self.repeated = False


@contextlib.contextmanager
def sigterm_as_interrupt(*, raise_when: Callable[[], bool] | None = None) -> Iterator[Interruption]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C does,
    so the caller's normal stop path (stop probes, keep the data, write the report) runs.

    Only the first signal interrupts: a second Ctrl-C (impatient users press it twice) must not
    throw away what the first one is saving. Once interrupted, further SIGINT/SIGTERM/SIGHUP are
    ignored with a note, also after the block (the caller writes the report and exits).

    ``raise_when``: the first signal raises only when it returns true (where the caller can stop
    cleanly: `import` in the middle of a read); otherwise it is only recorded, in the yielded
    ``Interruption``, for the caller to stop at its next step.
    """
    state = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.asked:
            if not state.repeated:
                state.repeated = True
                with contextlib.suppress(OSError):
                    os.write(
                        2, b"leakhunt: already stopping: the report of what was gathered is being written\n"
                    )
            return
        state.asked = True
        if raise_when is None or raise_when():
            raise KeyboardInterrupt(signal.Signals(signum).name)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield state
    finally:
        if not state.asked:
            for sig, previous in old.items():
                signal.signal(sig, previous)
