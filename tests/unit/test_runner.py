"""The one subprocess runner (leakhunt.probe.runner): how children stop, the gate, and that no child
outlives leakhunt. Real processes (sh, sleep, python), nothing mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from leakhunt.errors import TargetError
from leakhunt.probe import runner


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (or is only a zombie nobody will reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_sigint_first_then_sigkill_for_a_child_that_ignores_sigint() -> None:
    # the child says it is ready only once SIGINT is ignored, so the test never races its setup
    code = "trap '' INT; echo ready; while :; do sleep 0.05; done"
    child = runner.Child(["sh", "-c", code], name="stubborn")
    assert child.get_line(10.0) == "ready"
    started = time.monotonic()
    exit_ = child.stop(grace=1.0)
    took = time.monotonic() - started
    assert exit_.killed  # SIGINT was ignored: the grace period ran out
    assert exit_.returncode == -signal.SIGKILL
    assert exit_.describe() == "killed by SIGKILL"
    assert 1.0 <= took < 10.0
    assert child not in runner.live_children()
    assert _gone(child.pid)


def test_a_child_that_obeys_sigint_is_not_killed() -> None:
    child = runner.Child(["sh", "-c", "echo ready; exec sleep 30"], name="polite")
    assert child.get_line(10.0) == "ready"
    exit_ = child.stop(grace=5.0)
    assert not exit_.killed
    assert exit_.returncode == -signal.SIGINT


def test_the_whole_group_dies_with_the_child() -> None:
    """A tool's own children (bpftrace -c, a shell's pipeline) go with it."""
    child = runner.Child(["sh", "-c", "sleep 30 & echo $!; wait"], name="parent")
    line = child.get_line(10.0)
    assert line is not None and line.isdigit()
    grandchild = int(line)
    child.stop(grace=1.0)
    assert runner.wait_until(lambda: _gone(grandchild), timeout=5.0)


def test_the_gate_holds_the_command_before_exec_until_released(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    gate = runner.GatedCommand(["/bin/sh", "-c", f"echo $$ > {marker}"])
    try:
        gate.wait_ready()
        time.sleep(0.3)
        assert not marker.exists()  # held: the command has not run
        assert gate.child.alive()
        gate.release()
        assert runner.wait_until(marker.exists, timeout=5.0)
        # exec kept the pid: a probe attached to gate.pid sees the command itself
        assert runner.wait_until(lambda: marker.read_text().strip() == str(gate.pid), timeout=5.0)
        assert gate.child.wait(5.0) == 0
    finally:
        gate.stop()


def test_the_gated_command_gets_stdin_and_the_descriptors_leakhunt_inherited(tmp_path: Path) -> None:
    """As a shell's exec would: `leakhunt run -- jq . < data` reads data, and fds 4 and 9 handed
    to leakhunt (systemd's sockets, `9<file`) reach the command (the gate once closed fd 9)."""
    four, nine, seen = tmp_path / "four", tmp_path / "nine", tmp_path / "seen"
    four.write_text("4")
    nine.write_text("9")
    command = f"cat /proc/self/fd/4 /proc/self/fd/9 - > {seen}"
    script = textwrap.dedent(
        f"""
        import os
        # what a parent hands over: inheritable descriptors 4 and 9 (os.dup2 makes them so)
        os.dup2(os.open({str(four)!r}, os.O_RDONLY), 4)
        os.dup2(os.open({str(nine)!r}, os.O_RDONLY), 9)
        from leakhunt.probe import runner
        gate = runner.GatedCommand(["/bin/sh", "-c", {command!r}])
        gate.wait_ready()
        gate.release()
        raise SystemExit(gate.child.wait(10))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input="from stdin",
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == "49from stdin"


def test_the_gate_refuses_a_program_that_does_not_exist() -> None:
    with pytest.raises(TargetError, match="command not found"):
        runner.GatedCommand(["leakhunt-no-such-program-here"])


def test_no_child_outlives_leakhunt_even_when_it_is_sigkilled(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a parent killed with SIGKILL (no atexit, no cleanup) takes its children along."""
    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import sys, time
        from leakhunt.probe import runner
        tool = runner.Child(["sleep", "60"], name="tool")
        gate = runner.GatedCommand(["sleep", "60"])
        gate.wait_ready()
        open({str(pids)!r}, "w").write(f"{{tool.pid}} {{gate.pid}}\\n")
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    try:
        assert runner.wait_until(lambda: pids.exists() and pids.read_text().endswith("\n"), timeout=30.0)
        children = [int(p) for p in pids.read_text().split()]
        assert not any(_gone(p) for p in children)
        parent.kill()
        parent.wait(10)
        assert runner.wait_until(lambda: all(_gone(p) for p in children), timeout=5.0), children
    finally:
        if parent.poll() is None:
            parent.kill()
