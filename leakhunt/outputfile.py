"""Where leakhunt's output goes: files, devices, FIFOs and standard output, written safely as root.

leakhunt runs as root and writes where it is told (``-o``, ``--output-dir``, ``--save-raw``), often
in shared folders such as /tmp. What it writes to a path:

- nothing there, or a regular file (or a symlink, followed or not): a new file, replaced atomically
  (temporary file in the same folder + rename) with mode 0600. A symlink is replaced, never followed,
  so a link planted in a world-writable folder cannot redirect a root write to another file;
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe, ``/proc/self/fd/1``):
  written into as a stream, never replaced (a device node replaced by a file breaks the host). A
  symlink to one is followed only when it belongs to us or to the owner of its folder (the kernel's
  ``fs.protected_symlinks`` rule, which may be off); a FIFO nobody reads is an error, not a hang;
- a block device, a socket or a directory: refused.

``-`` is standard output. Every failure is a ``UsageError`` naming the path and the reason
(``No space left on device``), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from leakhunt.errors import UsageError

__all__ = [
    "STDOUT",
    "OutputFile",
    "check_output_dir",
    "real_dir_note",
    "write_atomic",
    "write_output",
    "write_stdout",
]

STDOUT = "-"


def _cannot(path: Path | str, err: OSError, hint: str = "") -> UsageError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENXIO:
        reason = "it is a FIFO with no reader"
    return UsageError(f"cannot write {path}: {reason}", hint=hint)


def write_atomic(path: Path, data: bytes, *, hint: str = "") -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one (mode 0600).

    What was at ``path`` (a file, a symlink) is replaced, never written through.
    """
    parent = path.parent if str(path.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _cannot(path, err, hint or "check that the folder exists and is writable") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # mkstemp already makes 0600; say it explicitly
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _cannot(path, err, hint) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _link_is_trusted(path: Path, st: os.stat_result) -> bool:
    """The kernel's protected_symlinks rule: a link in a sticky world-writable folder is followed
    only when it belongs to us or to the folder's owner."""
    try:
        folder = os.stat(path.parent if str(path.parent) else ".")
    except OSError:
        return False
    sticky_shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    return not sticky_shared or st.st_uid in (os.geteuid(), folder.st_uid)


def _stream_target(path: Path) -> os.stat_result | None:
    """The stat of what a write to ``path`` should stream into, or None to replace ``path``."""
    try:
        own = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _cannot(path, err) from None
    if stat.S_ISLNK(own.st_mode):
        try:
            st = os.stat(path)
        except OSError:
            return None  # a dangling link: replaced like a file
        if stat.S_ISREG(st.st_mode) or not _link_is_trusted(path, own):
            return None
    else:
        st = own
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot write {path}: it is a directory", hint="give a file name")
    if stat.S_ISBLK(st.st_mode):
        raise UsageError(
            f"refusing to write a report into {path}: it is a block device",
            hint="give a file name (a report written there would overwrite the disk)",
        )
    if stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"cannot write {path}: it is a socket", hint="give a file name")
    return st


def _write_stream(path: Path, data: bytes) -> None:
    # O_NONBLOCK: opening a FIFO nobody reads fails with ENXIO at once instead of blocking forever
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise _cannot(path, err) from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as err:
        raise _cannot(path, err) from None
    finally:
        os.close(fd)


class OutputFile:
    """A file written bit by bit (``trace --save-raw``), with the rules above: into a device or FIFO
    as a stream, else into a private temporary file beside ``path`` renamed onto it by ``close()``.
    A symlink planted at ``path`` is replaced, never written through, and the file is 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp: str | None = None
        if _stream_target(path) is not None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                os.set_blocking(fd, True)
            except OSError as err:
                raise _cannot(path, err) from None
        else:
            try:
                fd, self.tmp = tempfile.mkstemp(
                    dir=path.parent if str(path.parent) else Path(), prefix=f".{path.name}.", suffix=".tmp"
                )
            except OSError as err:
                raise _cannot(path, err, "check that the folder exists and is writable") from None
        self.fh = os.fdopen(fd, "w", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        self.fh.write(text)

    def close(self) -> None:
        """Finish the file: flushed, and renamed onto ``path`` (what was there is replaced)."""
        try:
            self.fh.flush()
            if self.tmp is not None:
                os.fsync(self.fh.fileno())
            self.fh.close()
            if self.tmp is not None:
                os.replace(self.tmp, self.path)
                self.tmp = None
        except OSError as err:
            raise _cannot(self.path, err) from None


# A probe run is checked before it starts: a report of a long run that cannot be written is lost.
MIN_FREE_BYTES = 1 << 20


def check_output_dir(output_dir: Path) -> None:
    """UsageError unless reports can be written to ``output_dir`` (created if missing): a file can
    be created there and at least ``MIN_FREE_BYTES`` are free. Run before probing starts."""
    hint = "choose another --output-dir (checked before probing, so no data is lost)"
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir} exists and is not a directory", hint=hint)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=".leakhunt-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
        fs = os.statvfs(output_dir)
    except OSError as err:
        raise UsageError(f"cannot write reports to {output_dir}: {err.strerror or err}", hint=hint) from None
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        raise UsageError(f"cannot write reports to {output_dir}: only {free} bytes free", hint=hint)


def real_dir_note(output_dir: Path) -> str | None:
    """A note when ``output_dir`` is (or passes through) a symbolic link: where files really go."""
    asked = os.path.abspath(output_dir)
    real = os.path.realpath(output_dir)
    if real == asked:
        return None
    return f"--output-dir {output_dir} is a symbolic link (or passes through one): the reports are in {real}"


def write_output(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` (``-`` = standard output) as the module docstring says."""
    if str(path) == STDOUT:
        write_stdout(data)
        return
    target = Path(path)
    if _stream_target(target) is not None:
        _write_stream(target, data)
    else:
        write_atomic(target, data)


def write_stdout(data: bytes) -> None:
    """Write bytes to standard output; a full disk or a closed pipe becomes a UsageError."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        raise stdout_error(err) from None


def stdout_error(err: OSError) -> UsageError:
    """The error for a failed write to standard output (after which stdout is made harmless)."""
    discard_stdout()
    return UsageError(
        f"cannot write to standard output: {err.strerror or err}",
        hint="free some space, or send the output elsewhere (-o FILE or --output-dir)",
    )


def discard_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that what is still buffered cannot fail again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
