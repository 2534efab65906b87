"""The one live probe loop: ``run_live(backend, job, pid=|command=)``.

Used by every live job in ``leakhunt.app`` (investigate/run, trace, scan --investigate-top). The
order of events, whatever the backend and the job:

1. ``run``/``trace -- CMD``: start the command held at a gate before exec (``runner.GatedCommand``)
   and wait until its shell blocks on the gate (its libc is mapped by then);
2. check the target (``tools.check_pid``); ask the job for the backend's command
   (``job.command(backend, ...)``), write its script privately, start the tool;
3. wait until the tool says its probes are in the kernel (``ProbeCommand.attached``), feeding the
   job every line; a tool that dies, a watched pid that exits, a timeout raise; an attach refused
   because another tracer holds the function is retried (``attach_retry_s``), with the other
   backend when ``switch`` allows;
4. arm the script, release the gate, read the command's identity once exec is done;
5. loop: ``job.tick(now)`` (it says when its duration is done), the target's liveness, the tool's
   lines to ``job.feed()``, the tool ending on its own;
6. Ctrl-C / SIGTERM at any point from 3 on: a note, then the normal stop;
7. stop: optionally read the tool's backlog, SIGINT then SIGKILL, feed its last lines,
   ``job.finish()``; end the launched command; a tool that failed before the job gathered
   anything raises ``ProbeFailed``;
8. whatever happened, no tool, gate or temporary file is left behind.

``run_live`` returns a ``LiveRun``: the target as it ended, the backend as it ran, the stop reason
and the run's times. The job keeps what it gathered and its notes (``job.notes``, appended to by
``run_live`` in the order things happened).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from leakhunt import sample
from leakhunt.errors import ProbeFailed, TargetError
from leakhunt.model import BackendInfo, Target
from leakhunt.probe import runner, tools, tracefs
from leakhunt.probe.backend import Backend, ProbeCommand, attach_conflict, hint_for

POLL = 0.2
_log = logging.getLogger(__name__)
ATTACH_RETRY_PAUSE_S = 3.0
BACKLOG_QUIET_S = 1.0  # the tool is caught up once it printed nothing for this long...
RELABEL_EVERY = 1.0  # seconds between looks at a launched command's identity (it may exec again)
# at the stop, a tool that prints nothing on SIGINT has printed all it had once it paused this long
BLOCK_QUIET_S = 0.1
BLOCK_QUIET_MAX_S = 0.3  # ... or once it printed for this long


class LiveJob(Protocol):
    """What a live job (``app.investigate``, ``app.trace``) does with a running probe."""

    notes: list[str]  # run_live appends its own notes here, in order
    duration: float  # the planned seconds (for the note when the target exits first)

    def begin(self, pid: int | None, info: sample.ProcessInfo, started_at: str) -> None:
        """Called once the target is known, before the tool starts (pid None: every task)."""
        ...

    def command(self, backend: Backend, pid: int | None, *, script_path: str, launched: bool) -> ProbeCommand:
        """The probe command for this job (``backend.investigate(...)`` or ``backend.trace(...)``).

        Called before every start of a tool: again with another backend after a switch.
        """
        ...

    def feed(self, line: str) -> None:
        """One line of the tool's output (chatter included; the job filters)."""
        ...

    def attaching(self, elapsed: float) -> None:
        """Called at every poll while waiting for the probes."""
        ...

    def started(self, pid: int | None, info: sample.ProcessInfo) -> None:
        """The probes are in, the command released: the job's clock starts now."""
        ...

    def tick(self, now: float) -> bool:
        """Called before each read with the seconds since ``started``; True when the job is done."""
        ...

    def target_gone(self, now: float) -> None:
        """The target ended (at ``now`` s); lines read from now on may not be symbolised."""
        ...

    def stopping(self, now: float) -> None:
        """The tool is about to be stopped; its last lines follow."""
        ...

    def finish(self, stderr: str) -> None:
        """The tool has stopped and its last lines were fed; ``stderr`` is all it said there."""
        ...

    def gathered(self) -> bool:
        """True when the job got any data (else a tool that failed is an error, not a result)."""
        ...


@dataclass(frozen=True)
class LiveRun:
    """How a live run went; what it gathered stays in the job."""

    target: Target
    backend: Backend  # the backend that ran (another one than asked for after a switch)
    info: BackendInfo  # its record for the report (argv of the last command)
    started_at: str  # ISO-8601, UTC
    duration_s: float  # from the release of the command (or the attach) to the stop
    stop_reason: str  # duration | target-exited | interrupted | error
    probe_exit: runner.Exit | None  # None: given to LivePolicy.on_data while the tool still exits
    probe_stderr: str


@dataclass
class LivePolicy:
    """How ``run_live`` treats the tool (the defaults suit ``investigate``)."""

    stop_grace: float = 8.0  # seconds between SIGINT and SIGKILL
    attach_retry_s: float = 0.0  # retry an attach refused by another tracer this long
    switch: Callable[[Backend], Backend | None] | None = None  # the other backend to try at once
    backlog_s: tuple[float, float] | None = None  # read the tool's backlog (target gone, alive) s
    say: Callable[[str], None] = lambda _message: None
    # Called once the tool's data is complete and the job finished, while the tool still exits
    # (its probes take the kernel seconds to detach): results made here are ready when it is gone.
    # Not called when the tool's data is only complete at its exit, nor when nothing was gathered.
    on_data: Callable[[LiveRun], None] | None = None


# The "process" of a kernel-mode run over every task (reports show pid 0, comm "kernel").
ALL_TASKS = sample.ProcessInfo(
    pid=0,
    create_time=0.0,
    comm="kernel",
    cmdline=(),
    exe=None,
    username=None,
    is_kernel_thread=True,
    status="running",
)


def run_live(
    backend: Backend,
    job: LiveJob,
    *,
    pid: int | None = None,
    command: tuple[str, ...] | None = None,
    policy: LivePolicy | None = None,
) -> LiveRun:
    """Run ``backend`` on ``pid`` or on ``command`` (started here, gated) for ``job``; see the module."""
    if pid is not None and command is not None:
        raise ValueError("give either a pid or a command")
    return _Live(backend, job, policy or LivePolicy()).run(pid, command)


class _Live:
    def __init__(self, backend: Backend, job: LiveJob, policy: LivePolicy) -> None:
        self.backend = backend
        self.job = job
        self.policy = policy
        self.probe: runner.Child | None = None  # the tool running now (an attach retry restarts it)
        self.cmd: ProbeCommand | None = None
        self.told_gone = False  # job.target_gone() was called
        self.children: list[runner.Child] = []  # every tool started (attach retries start it again)
        self.in_block = False  # the tool is printing a snapshot (ProbeCommand.block_start/block_end)
        self.block_lines: list[str] = []  # its lines so far, fed to the job once it is complete
        self.killed_in_cleanup = False  # killed once it said only cleanup follows (not a failure)
        # a launched command that execs again (a shim script: bash -> pyenv -> python3): who it is now
        self.relabel: sample.ProcessInfo | None = None

    def run(self, pid: int | None, command: tuple[str, ...] | None) -> LiveRun:
        job = self.job
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        gate: runner.GatedCommand | None = None
        workdir = runner.private_dir("live")
        stop_reason = "duration"
        exit_code: int | None = None
        t0 = time.monotonic()
        try:
            if command is not None:
                gate = runner.GatedCommand(command)
                pid = gate.pid
                gate.wait_ready()
            # no pid and no command: kernel mode over every task (nothing to watch or outlive)
            info = tools.check_pid(pid) if pid is not None else ALL_TASKS
            create_time = info.create_time
            job.begin(pid, info, started_at)
            self._start(pid, workdir, launched=gate is not None)
            try:
                self._attach(pid, workdir, gate)
                assert self.cmd is not None
                if self.cmd.arm is not None:
                    self.cmd.arm(pid or 0)
                if gate is not None:
                    gate.release()
                    info = _describe_after_exec(gate, info)
                    create_time = info.create_time
                t0 = time.monotonic()
                _log.info("%s attached to pid %s (%s)", self.backend.name, pid or "all tasks", info.comm)
                job.started(pid, info)
                stop_reason = self._loop(pid, create_time, gate, t0)
            except KeyboardInterrupt:
                stop_reason = "interrupted"
                job.notes.append("interrupted (Ctrl-C or SIGTERM): the report holds what was gathered so far")
            probe, cmd = self.probe, self.cmd
            assert probe is not None and cmd is not None
            duration = time.monotonic() - t0
            if self.relabel is not None:
                info = self.relabel
            _log.info("stopping %s after %.1f s: %s", self.backend.name, duration, stop_reason)
            job.stopping(duration)
            if not self.told_gone and not _alive(pid, create_time, gate):
                job.target_gone(duration)
            if self.policy.backlog_s is not None:
                gone, alive = self.policy.backlog_s
                # a target that exited goes quiet: wait for the tool to catch up; a live one never does
                _drain_backlog(probe, gone if stop_reason == "target-exited" else alive, self._feed)
            # SIGINT, then the tool's last lines: with some tools its data is complete long before
            # it has exited (detaching the probes takes the kernel seconds)
            probe_exit = self._stop_for_data(probe, cmd)
            if probe_exit is None:
                _log.debug("%s: its data is complete; it still exits", cmd.info.name)
            job.finish(probe.stderr_text)
            if probe_exit is not None and probe_exit.killed:
                job.notes.append(f"{cmd.info.name} did not stop on SIGINT and was killed")
            if gate is not None:
                exit_code = _finish_command(gate, job.notes)
            result = functools.partial(
                self._result,
                pid=pid,
                info=info,
                command=command,
                exit_code=exit_code,
                started_at=started_at,
                duration=duration,
                stop_reason=stop_reason,
            )
            if probe_exit is None and self.policy.on_data is not None and job.gathered():
                self.policy.on_data(result(probe_exit=None))  # the results are made while the tool exits
            if probe_exit is None:
                probe_exit = self._reap(probe, cmd)
            failed = probe_exit.returncode not in (0, -2, 130) and not self.killed_in_cleanup
            if failed and not job.gathered() and stop_reason == "duration":
                raise ProbeFailed(
                    f"{cmd.info.name} ended with {probe_exit.describe()} before printing anything",
                    hint=hint_for(probe.stderr_text),
                    stderr=probe.stderr_text,
                )
        finally:
            stop_leftovers(self.children, gate)
            shutil.rmtree(workdir, ignore_errors=True)
        return result(probe_exit=probe_exit)

    def _result(
        self,
        *,
        pid: int | None,
        info: sample.ProcessInfo,
        command: tuple[str, ...] | None,
        exit_code: int | None,
        started_at: str,
        duration: float,
        stop_reason: str,
        probe_exit: runner.Exit | None,
    ) -> LiveRun:
        probe, cmd = self.probe, self.cmd
        assert probe is not None and cmd is not None
        target = Target(
            pid=pid or 0,
            comm=info.comm,
            cmdline=info.cmdline or command or (),
            exe=info.exe,
            launched=command is not None,
            exit_code=exit_code,
            exited_early=stop_reason == "target-exited",
        )
        return LiveRun(
            target=target,
            backend=self.backend,
            info=cmd.info,
            started_at=started_at,
            duration_s=duration,
            stop_reason=stop_reason,
            probe_exit=probe_exit,
            probe_stderr=probe.stderr_text,
        )

    # --- stopping ---------------------------------------------------------------------------

    def _feed(self, line: str) -> None:
        """One line to the job. A tool that tells its snapshots' first and last lines
        (``ProbeCommand.block_start``/``block_end``) has each snapshot fed whole, at its last line:
        one it was printing when stopped is never finished (bpftrace 0.17 drops the rest of the
        block on SIGINT) and is left out instead of taken for the last state."""
        cmd = self.cmd
        assert cmd is not None
        if cmd.block_start is None or cmd.block_end is None:
            self.job.feed(line)
            return
        if cmd.block_start(line):
            self._flush()  # a block without its last line (another script): fed as it is
            self.in_block = True
        if not self.in_block:
            self.job.feed(line)
            return
        self.block_lines.append(line)
        if cmd.block_end(line):
            self._flush()

    def _flush(self) -> None:
        lines, self.block_lines, self.in_block = self.block_lines, [], False
        for line in lines:
            self.job.feed(line)

    def _stop_for_data(self, probe: runner.Child, cmd: ProbeCommand) -> runner.Exit | None:
        """SIGINT to the tool, then its lines to the job until it has printed all its data.

        Returns how the tool ended, or None when its data is complete while it still exits: it
        printed ``cmd.data_done`` (the native host, after its last snapshot), or it prints no data
        on SIGINT (``cmd.block_end``: bpftrace's script), so what it printed before is all (a
        snapshot half printed is left out, with a note). Without either, the tool is waited for
        (then killed after ``stop_grace``) and its last lines read.
        """
        if cmd.data_done is None and cmd.block_end is None:
            probe_exit = probe.stop(grace=self.policy.stop_grace)
            for line in probe.drain(0.5):
                self._feed(line)
            return probe_exit
        probe.signal_group(probe.stop_signal)
        deadline = time.monotonic() + self.policy.stop_grace
        if cmd.data_done is None:
            # what it printed until the signal: read until it pauses
            until = time.monotonic() + BLOCK_QUIET_MAX_S
            while not probe.eof and time.monotonic() < until:
                got = probe.get_line(BLOCK_QUIET_S)
                if got is None:
                    break
                self._feed(got)
            if self.in_block:
                self.block_lines, self.in_block = [], False
                self.job.notes.append(
                    f"the snapshot {cmd.info.name} was printing when it was stopped is left out (incomplete)"
                )
            return None
        while not probe.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = probe.get_line(min(left, POLL))
            if got is None:
                continue
            self._feed(got)
            if cmd.data_done(got):
                return None
        # the output ended or the grace passed without the data complete: as without the signs
        probe_exit = probe.stop(grace=max(deadline - time.monotonic(), 0.0))
        for line in probe.drain(0.5):
            self._feed(line)
        return probe_exit

    def _reap(self, probe: runner.Child, cmd: ProbeCommand) -> runner.Exit:
        """Wait for a tool whose data is complete to exit (SIGINT was sent); what it prints now
        is not data. A tool that says it only cleans up (``cmd.cleanup_follows``) is killed then."""
        deadline = time.monotonic() + self.policy.stop_grace
        while probe.alive() and not probe.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            line = probe.get_line(min(left, POLL))
            if line is not None and cmd.cleanup_follows is not None and cmd.cleanup_follows(line):
                _log.debug("%s printed its end: killed instead of waiting for its cleanup", cmd.info.name)
                probe.signal_group(signal.SIGKILL)
                self.killed_in_cleanup = True
                break
        return probe.stop(grace=max(deadline - time.monotonic(), 0.0))

    # --- stages -----------------------------------------------------------------------------

    def _start(self, pid: int | None, workdir: str, *, launched: bool) -> None:
        script_path = os.path.join(workdir, f"{self.backend.name}.script")
        cmd = self.job.command(self.backend, pid, script_path=script_path, launched=launched)
        _log.info("starting %s (%s)", self.backend.name, self.backend.reason)
        if cmd.script is not None and cmd.script_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cmd.script_path)  # an earlier attempt's (workdir is our own mkdtemp)
            fd = os.open(cmd.script_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(cmd.script)
        self.cmd = cmd
        self.probe = runner.Child(cmd.argv, env={**os.environ, **dict(cmd.env)}, name=cmd.info.name)
        self.children.append(self.probe)

    def _attach(self, pid: int | None, workdir: str, gate: runner.GatedCommand | None) -> None:
        """Wait until the tool is attached; start it again when another tracer was in the way.

        BCC 0.26 registers its uprobes with a reference-counter offset and bpftrace without one;
        the kernel refuses a second uprobe on the same instruction that differs in it
        ("ref_ctr_offset mismatch" in dmesg, EINVAL to the tool), so the two cannot probe
        malloc/free at the same time. With ``policy.switch`` the other tool is tried at once (it
        shares with its own kind); otherwise the attach is retried for ``policy.attach_retry_s``.
        """
        give_up = time.monotonic() + self.policy.attach_retry_s
        switched = False
        while True:
            try:
                self._wait_attached(pid, launched=gate is not None)
                return
            except ProbeFailed as err:
                if time.monotonic() > give_up or not attach_conflict(err.stderr):
                    raise
            assert self.probe is not None
            self.probe.stop(grace=2.0)
            other = self.policy.switch(self.backend) if self.policy.switch and not switched else None
            if other is not None:
                switched = True
                note = (
                    f"{self.backend.name} could not attach: another tracer holds an incompatible probe on "
                    f"the same function; traced with {other.name} instead"
                )
                self.job.notes.append(note)
                self.policy.say(
                    f"{self.backend.name} could not attach (another tracer in the way); trying {other.name}"
                )
                self.backend = other.with_reason(f"auto: {other.name} ({note})")
            else:
                note = (
                    f"{self.backend.name} could not attach at first (another tracer on the same function); "
                    "retried"
                )
                if note not in self.job.notes:
                    self.job.notes.append(note)
                    self.policy.say("another tracer holds a probe on the same function; retrying")
                time.sleep(ATTACH_RETRY_PAUSE_S)
            self._start(pid, workdir, launched=gate is not None)

    def _wait_attached(self, pid: int | None, *, launched: bool) -> None:
        probe, cmd = self.probe, self.cmd
        assert probe is not None and cmd is not None
        started = time.monotonic()
        deadline = started + self.backend.attach_timeout
        while True:
            self.job.attaching(time.monotonic() - started)
            line = probe.get_line(POLL)
            if line is not None:
                self._feed(line)
            if cmd.attached(line, probe.stderr_text, probe.pid):
                return
            if not probe.alive() or probe.eof:
                probe.wait(2.0)
                code = probe.poll()
                raise ProbeFailed(
                    f"{cmd.info.name} exited while attaching"
                    + (f" (status {code})" if code is not None else ""),
                    hint=hint_for(probe.stderr_text),
                    stderr=probe.stderr_text,
                )
            # a launched command waits at its gate: only a watched pid can exit first
            if not launched and pid is not None and not runner.pid_alive(pid):
                raise TargetError(f"pid {pid} exited before the probes were attached")
            if time.monotonic() > deadline:
                raise ProbeFailed(
                    f"{cmd.info.name} did not attach within {self.backend.attach_timeout:.0f} s",
                    hint=hint_for(probe.stderr_text),
                    stderr=probe.stderr_text,
                )

    def _loop(self, pid: int | None, create_time: float, gate: runner.GatedCommand | None, t0: float) -> str:
        probe, cmd = self.probe, self.cmd
        assert probe is not None and cmd is not None
        described = 0.0
        while True:
            now = time.monotonic() - t0
            if self.job.tick(now):
                return "duration"
            if not _alive(pid, create_time, gate):
                self.job.notes.append(target_exit_note(now, self.job.duration))
                self.job.target_gone(now)
                self.told_gone = True
                return "target-exited"
            if gate is not None and now - described >= RELABEL_EVERY:
                described = now
                self._relabel(gate.pid, create_time)
            _read_for(probe, POLL, self._feed)
            if probe.eof or not probe.alive():
                self.job.notes.append(f"{cmd.info.name} ended on its own after {now:.1f} s")
                return "error" if pid is None or runner.pid_alive(pid) else "target-exited"

    def _relabel(self, pid: int, create_time: float) -> None:
        """Who the launched command is now, when it has exec'd since it was described (the report
        names the program that ran, not the script that started it)."""
        again = described_if_same(pid, create_time)
        if again is not None and again.cmdline:  # (the arguments read empty in the middle of an exec)
            self.relabel = again


# --- helpers ------------------------------------------------------------------------------------


def described_if_same(pid: int, create_time: float) -> sample.ProcessInfo | None:
    """``pid`` described while it is still the process created at ``create_time`` and not a
    zombie, else None."""
    info = sample.describe(pid)
    if info is not None and info.status != "zombie" and abs(info.create_time - create_time) < 0.5:
        return info
    return None


def same_process(pid: int, create_time: float) -> bool:
    """True while ``pid`` is still the process created at ``create_time`` and not a zombie."""
    return described_if_same(pid, create_time) is not None


def _alive(pid: int | None, create_time: float, gate: runner.GatedCommand | None) -> bool:
    if gate is not None:
        return gate.child.poll() is None
    if pid is None:
        return True  # kernel mode over every task: nothing to outlive
    return same_process(pid, create_time)


def _read_for(probe: runner.Child, seconds: float, feed: Callable[[str], None]) -> None:
    """Feed the tool's lines for up to ``seconds`` (less when it is quiet)."""
    deadline = time.monotonic() + seconds
    line = probe.get_line(seconds)
    while line is not None:
        feed(line)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        line = probe.get_line(left)


def _drain_backlog(probe: runner.Child, limit: float, feed: Callable[[str], None]) -> None:
    """Read what the tool still prints before stopping it: under load its output lags the target,
    and a tool stopped at once drops the events of the target's last moments."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and probe.alive():
        line = probe.get_line(BACKLOG_QUIET_S)
        if line is None:
            return  # quiet: caught up
        feed(line)


def _finish_command(gate: runner.GatedCommand, notes: list[str]) -> int | None:
    """The launched command's exit status; stop it first if it still runs."""
    code = gate.child.poll()
    if code is None:
        gate_exit = gate.stop(grace=3.0)
        notes.append(f"the command was still running at the end and was stopped ({gate_exit.describe()})")
        return gate_exit.returncode
    notes.append(f"the command {runner.Exit(code, False).describe()}")
    return code


def stop_leftovers(probes: Sequence[runner.Child | None], gate: runner.GatedCommand | None) -> None:
    """On the way out, whatever happened: stop the tools still running, then the launched command.

    Then remove the uprobe events the tools (every one started: attach retries start it again)
    left in tracefs (BCC leaves its tracefs events behind when it dies or fails while attaching;
    they are named after its pid).
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


def _describe_after_exec(gate: runner.GatedCommand, before: sample.ProcessInfo) -> sample.ProcessInfo:
    """The launched command's identity once the gate's shell has exec'd it."""
    found: list[sample.ProcessInfo] = []

    def execd() -> bool:
        info = sample.describe(gate.pid)
        if info is not None and info.cmdline[:1] != ("/bin/sh",):
            # comm and cmdline are read one after the other: read again now that exec is done
            found.append(sample.describe(gate.pid) or info)
            return True
        return gate.child.poll() is not None

    runner.wait_until(execd, timeout=3.0, step=0.005)
    if found and found[-1].cmdline[:1] != ("/bin/sh",):
        return found[-1]
    return replace(before, cmdline=gate.argv, comm=os.path.basename(gate.argv[0])[:15])
