"""Pieces of a live probe run shared by ``investigate``/``run`` (session.py) and ``trace`` (trace.py).

Both start the target held at a gate (``run``, ``trace -- CMD``) or watch a pid, start a tool,
wait until its probes are attached, and tell "the target exited" from "the probe failed". How a
tool says it is attached differs per tool and per mode, so each caller keeps its own attach
signal and its own stderr hint; what they share is here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from leakhunt import sample
from leakhunt.errors import ProbeFailed, TargetError
from leakhunt.model import Target
from leakhunt.probe import runner, tracefs

ATTACH_TIMEOUT_BPFTRACE = 60.0
ATTACH_TIMEOUT_BCC = 120.0  # BCC compiles its BPF program with clang first: slow on a busy host
POLL = 0.2


def attach_timeout(backend: str) -> float:
    """Seconds to wait for ``backend`` ("bpftrace" or "bcc") to attach."""
    return ATTACH_TIMEOUT_BPFTRACE if backend == "bpftrace" else ATTACH_TIMEOUT_BCC


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists (a zombie counts; another user's process too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists()


def same_process(pid: int, create_time: float) -> bool:
    """True while ``pid`` is still the process created at ``create_time`` and not a zombie."""
    info = sample.describe(pid)
    return info is not None and info.status != "zombie" and abs(info.create_time - create_time) < 0.5


def target(
    pid: int,
    info: sample.ProcessInfo,
    command: tuple[str, ...] | None,
    *,
    exit_code: int | None,
    stop_reason: str,
) -> Target:
    """The Target of a live run: ``info`` as read from /proc, ``command`` when leakhunt started it."""
    return Target(
        pid=pid,
        comm=info.comm,
        cmdline=info.cmdline or command or (),
        exe=info.exe,
        launched=command is not None,
        exit_code=exit_code,
        exited_early=stop_reason == "target-exited",
    )


class AttachWatch:
    """The failure checks of an attach wait, made after every poll of the tool's output.

    The caller's loop reads the tool's lines and decides when it is attached (the signal differs
    per tool); ``check()`` raises when the tool exited (ProbeFailed with ``hint(stderr)``), when a
    watched pid exited first (TargetError: a launched command waits at its gate, so it is not
    checked), or when ``timeout`` passed (ProbeFailed).
    """

    def __init__(
        self,
        probe: runner.Child,
        name: str,
        pid: int,
        *,
        launched: bool,
        timeout: float,
        hint: Callable[[str], str],
        exit_status_in_message: bool,
    ) -> None:
        self.probe = probe
        self.name = name
        self.pid = pid
        self.launched = launched
        self.timeout = timeout
        self.hint = hint
        # investigate's message names the tool's exit status; trace's never did
        self.exit_status_in_message = exit_status_in_message
        self.started = time.monotonic()
        self.deadline = self.started + timeout

    def check(self) -> None:
        """Raise if waiting longer is pointless (see the class); return to keep waiting."""
        probe = self.probe
        if not probe.alive() or probe.eof:
            probe.wait(2.0)
            code = probe.poll() if self.exit_status_in_message else None
            raise ProbeFailed(
                f"{self.name} exited while attaching" + (f" (status {code})" if code is not None else ""),
                hint=self.hint(probe.stderr_text),
                stderr=probe.stderr_text,
            )
        if not self.launched and not pid_alive(self.pid):
            raise TargetError(f"pid {self.pid} exited before the probes were attached")
        if time.monotonic() > self.deadline:
            raise ProbeFailed(
                f"{self.name} did not attach within {self.timeout:.0f} s",
                hint=self.hint(probe.stderr_text),
                stderr=probe.stderr_text,
            )


def stop_and_drain(probe: runner.Child, grace: float, feed: Callable[[str], None]) -> runner.Exit:
    """Stop ``probe`` (SIGINT, then SIGKILL after ``grace`` s) and feed what it printed last."""
    exit_ = probe.stop(grace=grace)
    for line in probe.drain(0.5):
        feed(line)
    return exit_


def stop_leftovers(probes: tuple[runner.Child | None, ...], gate: runner.GatedCommand | None) -> None:
    """On the way out, whatever happened: stop probes still running, then the launched command.

    Then remove the uprobe events a probe left in tracefs (BCC leaves its tracefs events behind when
    it dies or fails while attaching; they are named after its pid).
    """
    for child in probes:
        with contextlib.suppress(Exception):
            if child is not None and child.alive():
                child.stop(grace=3.0)
    with contextlib.suppress(Exception):
        if gate is not None:
            gate.stop(grace=2.0)
    with contextlib.suppress(Exception):
        tracefs.remove_owned_by(child.pid for child in probes if child is not None)


def target_exit_note(elapsed: float, planned: float) -> str:
    """What to say when the target ended ``elapsed`` s into a run planned for ``planned`` s.

    After the planned end the run was only waiting for its last snapshot: "before the planned
    10 s" would then contradict the 11.5 s beside it.
    """
    if elapsed < planned:
        return f"the target exited after {elapsed:.1f} s, before the planned {planned:g} s"
    return (
        f"the target exited after {elapsed:.1f} s, past the planned {planned:g} s, "
        "while the last snapshot was awaited"
    )
