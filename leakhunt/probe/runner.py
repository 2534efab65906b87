"""The one place where leakhunt starts processes (probe tools and launched targets).

Guarantees, whatever happens (duration reached, target exit, Ctrl-C, SIGTERM, an exception):
- every child runs in its own session (process group), so a terminal's Ctrl-C reaches leakhunt
  only, and leakhunt decides the order of stopping: probes get SIGINT first (memleak and bpftrace
  print their final maps on SIGINT), then SIGKILL to the whole group after a grace period;
- every child gets PR_SET_PDEATHSIG=SIGKILL, so even if leakhunt itself is SIGKILLed its children die;
- every live child is in a registry that ``stop_all()`` empties; it runs at interpreter exit.

Output is read by threads into queues, so a child never blocks on a full pipe and the caller can
poll lines with a timeout while watching the target. Start children from the main thread: the
kernel's parent-death signal fires when the *thread* that forked exits.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from leakhunt import procfs
from leakhunt.errors import ProbeFailed, TargetError, ToolMissing

_PR_SET_PDEATHSIG = 1
_log = logging.getLogger(__name__)
_LIVE: set[Child] = set()
_LIVE_LOCK = threading.Lock()


def _die_with_parent() -> None:
    """preexec hook: ask the kernel to SIGKILL this child when its parent dies.

    Also give the child default SIGINT/SIGQUIT handling: a shell starts background jobs with them
    ignored, the child would inherit that, and a probe ignoring SIGINT never prints its last map.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    with contextlib.suppress(OSError, ValueError):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@dataclass(frozen=True)
class Exit:
    """How a child ended: ``returncode`` as Popen reports it (negative = killed by that signal)."""

    returncode: int
    killed: bool  # leakhunt had to SIGKILL it after the grace period

    def describe(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"killed by {name}"
        return f"exited with status {self.returncode}"


class Child:
    """A running child process with line-wise, non-blocking access to its output."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        capture: bool = True,
        stop_signal: signal.Signals = signal.SIGINT,
        pass_fds: Sequence[int] = (),
        merge_stderr: bool = False,
        inherit_stdin: bool = False,
    ) -> None:
        self.argv = tuple(argv)
        self.name = name or os.path.basename(self.argv[0])
        self.stop_signal = stop_signal
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads: list[threading.Thread] = []
        full_env = dict(os.environ if env is None else env)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=None if inherit_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else None,
                stderr=(subprocess.STDOUT if merge_stderr else subprocess.PIPE) if capture else None,
                env=full_env,
                cwd=cwd,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl, no locks taken
                pass_fds=tuple(pass_fds),
            )
        except FileNotFoundError as err:
            raise ToolMissing(f"{self.argv[0]}: not found", hint="run `leakhunt doctor`") from err
        except PermissionError as err:
            raise TargetError(f"{self.argv[0]}: permission denied") from err
        self.pid = self.proc.pid
        _log.debug("started %s (pid %d): %s", self.name, self.pid, " ".join(self.argv))
        with _LIVE_LOCK:
            _LIVE.add(self)
        if capture:
            assert self.proc.stdout is not None
            self._start_reader(self.proc.stdout, self._lines.put, is_stdout=True)
            if not merge_stderr:
                assert self.proc.stderr is not None
                self._start_reader(self.proc.stderr, self._stderr.append, is_stdout=False)

    def _start_reader(self, stream: IO[str], sink: Callable[[str], object], *, is_stdout: bool) -> None:
        def pump() -> None:
            try:
                for line in stream:
                    sink(line.rstrip("\n"))
            except (OSError, ValueError):
                pass
            finally:
                if is_stdout:
                    self._lines.put(None)  # end of output

        thread = threading.Thread(target=pump, name=f"leakhunt-read-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- output -----------------------------------------------------------------------------

    def get_line(self, timeout: float) -> str | None:
        """The next stdout line, or None if none came within ``timeout`` seconds or output ended.

        ``eof`` tells the two apart.
        """
        try:
            line = self._lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if line is None:
            self._eof = True
            return None
        return line

    @property
    def eof(self) -> bool:
        return getattr(self, "_eof", False)

    def drain(self, timeout: float = 0.0) -> Iterator[str]:
        """Yield every stdout line available now (waiting up to ``timeout`` for the first; not
        at all once the output has ended)."""
        line = self.get_line(0.0 if self.eof else timeout)
        while line is not None:
            yield line
            line = self.get_line(0.0)

    @property
    def stderr_text(self) -> str:
        return "\n".join(self._stderr)

    # --- lifetime ---------------------------------------------------------------------------

    def poll(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 5.0) -> Exit:
        """Stop politely (``stop_signal`` to the group), then SIGKILL the group after ``grace`` s."""
        killed = False
        if self.proc.poll() is None:
            self.signal_group(self.stop_signal)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                killed = True
        # Kill whatever is left in the group (bpftrace -c's command, a stuck tool) in any case.
        self.signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        _log.debug("stopped %s (pid %d): %s", self.name, self.pid, Exit(code, killed).describe())
        for thread in self._threads:
            thread.join(timeout=2.0)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return Exit(code, killed)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(grace: float = 3.0) -> None:
    """Stop every child still running (probes first get their polite signal)."""
    with _LIVE_LOCK:
        children = list(_LIVE)
    for child in children:
        with contextlib.suppress(Exception):
            child.stop(grace)


atexit.register(stop_all)


def live_children() -> list[Child]:
    with _LIVE_LOCK:
        return list(_LIVE)


def inherited_fds() -> tuple[int, ...]:
    """Descriptors above 2 this process holds open and inheritable: the ones its parent gave it
    (Python opens its own non-inheritable, PEP 446)."""
    try:
        names = procfs.listdir("self", "fd")
    except procfs.ProcError:
        return ()
    found = []
    for name in names:
        fd = int(name) if name.isdigit() else -1
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                continue
    return tuple(sorted(found))


class GatedCommand:
    """A command started but held before ``exec`` until ``release()``.

    The child is a ``/bin/sh`` that execs the command with a redirection from a FIFO, so it blocks
    in that ``open`` until ``release()`` opens the FIFO's other end. Its pid stays the same, so a
    probe can attach with ``-p PID`` first and miss no allocation made after exec, and:
    - everything the shell allocates (parsing, expansion, its redirection table) happens before it
      blocks, so a probe attached while it waits sees no allocation of the shell's (a ``read``
      builtin used to set ``$_`` after the release: 5- and 28-byte blocks the command never freed);
    - no file descriptor number is assumed: a parent that holds fd 3 open (``flock``, systemd
      socket activation) used to make the shell fail to read its gate and exec at once, before
      the probe was armed. The FIFO is opened and closed again in the shell only, on a number
      (9, else lower) that no inherited descriptor holds; inherited ones and stdin are passed on.
    """

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> None:
        if not argv:
            raise TargetError("no command given", hint="put the command after `--`")
        # The gate shell would only fail at exec, after the probe attached: check the program now.
        exe = argv[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise TargetError(f"command not found: {exe}", hint="give a program on PATH or a path to it")
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise TargetError(f"cannot execute {exe}", hint="check that the file exists and is executable")
        self._dir = private_dir("gate")
        self._fifo = os.path.join(self._dir, "release")
        os.mkfifo(self._fifo, 0o600)
        # the command gets what a shell's exec would give it: stdin and the descriptors leakhunt
        # inherited (systemd's sockets, `3<file`); the gate uses a number none of them holds
        passed = inherited_fds()
        gate_fd = next((fd for fd in range(9, 2, -1) if fd not in passed), 9)
        script = f'exec "$@" {gate_fd}<{shlex.quote(self._fifo)} {gate_fd}<&-'
        try:
            self.child = Child(
                ["/bin/sh", "-c", script, "leakhunt-gate", *argv],
                name=os.path.basename(argv[0]),
                env=env,
                cwd=cwd,
                capture=False,
                stop_signal=signal.SIGTERM,
                pass_fds=passed,
                inherit_stdin=True,
            )
        except BaseException:
            self._cleanup()
            raise
        self.argv = tuple(argv)
        self.pid = self.child.pid

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until the shell blocks opening the FIFO: its libc is mapped by then.

        Raises TargetError when the shell ended instead.
        """
        nrs = _OPEN_SYSCALLS.get(platform.machine(), ())

        def blocked() -> bool:
            try:
                nr = procfs.parse_syscall_number(procfs.read_text(self.pid, "syscall"))
            except procfs.ProcError:
                return False
            return nr is not None and nr in nrs

        if not wait_until(blocked, timeout=timeout, step=0.01) and self.child.poll() is not None:
            raise TargetError(f"could not start {self.argv[0]}")

    def release(self) -> None:
        """Let the command exec (a no-op when the shell is gone)."""
        with contextlib.suppress(OSError):
            # O_NONBLOCK: ENXIO instead of blocking forever when the shell died meanwhile.
            fd = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        self._cleanup()

    def stop(self, grace: float = 3.0) -> Exit:
        self._cleanup()
        return self.child.stop(grace)

    def _cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


# open and openat: where the gate shell blocks until released (/proc/PID/syscall's first field)
_OPEN_SYSCALLS: dict[str, tuple[int, ...]] = {"x86_64": (2, 257), "aarch64": (56,)}


def run_capture(
    argv: Sequence[str], timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion (``--version`` queries, doctor checks).

    ``env`` replaces the environment when given (``ld.so --list`` with a command's LD_PRELOAD).
    """
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as err:
        raise ToolMissing(f"{argv[0]}: not found", hint="run `leakhunt doctor`") from err
    except subprocess.TimeoutExpired as err:
        raise ProbeFailed(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from err


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists (a zombie counts; another user's process too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return procfs.exists(pid)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- private working folders ----------------------------------------------------------------------

# leakhunt-<kind>-pid<PID>-<random>: the pid says whose it is, so a folder left behind by a
# leakhunt that was SIGKILLed is recognised as stale by the next one.
_OWNED_DIR = re.compile(r"^leakhunt-[a-z]+-pid(\d+)-[A-Za-z0-9_]{8}$")
# the names of earlier versions (no pid): stale when untouched for LEGACY_STALE_S
_LEGACY_DIR = re.compile(r"^leakhunt-(?:trace-|gate-)?[A-Za-z0-9_]{8}$")
LEGACY_STALE_S = 3600.0


def private_dir(kind: str) -> str:
    """A new private folder in the temporary folder for one run's files (scripts, the gate's
    FIFO); stale folders of earlier runs that were killed are removed first."""
    clean_stale_dirs()
    return tempfile.mkdtemp(prefix=f"leakhunt-{kind}-pid{os.getpid()}-")


def clean_stale_dirs(folder: str | None = None) -> list[str]:
    """Remove the working folders of leakhunt runs that are gone (killed before they could clean
    up); returns the paths removed. Only folders owned by this user, never through a symlink."""
    base = folder or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        owned = _OWNED_DIR.match(name)
        if owned is None and _LEGACY_DIR.match(name) is None:
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if owned is not None:
            pid = int(owned.group(1))
            if pid == os.getpid() or pid_alive(pid):
                continue
        elif now - st.st_mtime < LEGACY_STALE_S:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            removed.append(path)
    return removed
