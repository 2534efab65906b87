"""Opening what the user names as input (``report``, ``diff``, ``import``): bounded, never blocking.

A path may name anything: ``/dev/zero`` (endless), a FIFO nobody writes to (blocks forever on
open), a 200 MB file without a newline. What is accepted:

- regular files, ``-`` (standard input) and FIFOs/pipes (``/dev/stdin``, ``<(cmd)``); a FIFO is
  opened without waiting for a writer, and one that has none reads as empty;
- not character or block devices (``/dev/zero``, a disk), sockets or directories: a clear error.

Reads are bounded: a JSON document by ``MAX_DOCUMENT_BYTES``, a line of a captured log by
``MAX_LINE_CHARS`` (bpftrace ``-f json`` prints a whole map on one line, hence the generous size).
Every problem is a ``ReportError`` naming the file.
"""

from __future__ import annotations

import codecs
import io
import os
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

from leakhunt.errors import ReportError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_LINE_CHARS",
    "open_input",
    "read_blocks",
    "read_byte_blocks",
    "read_document",
    "read_lines",
]

MAX_DOCUMENT_BYTES = 256 << 20
MAX_LINE_CHARS = 64 << 20
BLOCK_BYTES = 1 << 20


def _check_kind(name: str, st: os.stat_result, *, is_tty: bool) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or is_tty:
        return
    if stat.S_ISDIR(mode):
        raise ReportError(f"{name} is a directory", hint="give the file itself")
    what = (
        "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a file"
    )
    raise ReportError(
        f"{name} is {what}, not a regular file",
        hint="give a file (or `-` and pipe it in)",
    )


def open_input(name: str) -> tuple[BinaryIO, os.stat_result]:
    """The binary stream of ``name`` (``-`` = standard input) and its stat, checked as above."""
    if name == "-":
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError):  # replaced by an in-memory stream (embedding, tests)
            data = sys.stdin.read()
            return io.BytesIO(data.encode("utf-8") if isinstance(data, str) else data), os.stat_result(
                (stat.S_IFIFO, 0, 0, 0, 0, 0, len(data), 0, 0, 0)
            )
        st = os.fstat(fd)
        _check_kind("standard input", st, is_tty=os.isatty(fd))
        return sys.stdin.buffer, st
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once (blocking would wait forever)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ReportError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{name} is a directory", hint="give the file itself") from None
    except PermissionError:
        raise ReportError(
            f"{name}: permission denied", hint="run leakhunt as a user who can read it"
        ) from None
    except OSError as err:
        raise ReportError(f"{name}: cannot read it ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        _check_kind(name, st, is_tty=False)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st


def _empty(name: str, st: os.stat_result) -> ReportError:
    fifo = " (a FIFO that nobody writes to)" if stat.S_ISFIFO(st.st_mode) else ""
    return ReportError(f"{name} is empty{fifo}", hint="give a file with content")


def read_document(name: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """All of ``name``, at most ``limit`` bytes (ReportError beyond; also for an empty input)."""
    stream, st = open_input(name)
    shown = "standard input" if name == "-" else name
    try:
        data = stream.read(limit + 1)
    except OSError as err:
        raise ReportError(f"{shown}: cannot read it ({err.strerror})") from None
    finally:
        if name != "-":
            stream.close()
    if len(data) > limit:
        raise ReportError(
            f"{shown} is too large: over {limit >> 20} MiB",
            hint="a leakhunt JSON report is far smaller; is it the right file?",
        )
    if not data:
        raise _empty(shown, st)
    return data


def read_lines(
    stream: BinaryIO, name: str, st: os.stat_result, max_line: int = MAX_LINE_CHARS
) -> Iterator[str]:
    """Lines of ``stream`` decoded as UTF-8 (bad bytes replaced, any newline convention), each at
    most ``max_line`` characters: a longer one is a ReportError, as is an input with no line."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    number = 0
    while True:
        try:
            line = text.readline(max_line + 1)
        except OSError as err:
            raise ReportError(f"{name}: cannot read it ({err.strerror})") from None
        if not line:
            break
        number += 1
        if len(line) > max_line and not line.endswith("\n"):
            raise ReportError(
                f"{name}: line {number} is too long (over {max_line >> 20} MiB without a newline)",
                hint="memleak and bpftrace print lines far shorter; is it the right file?",
            )
        yield line
    if number == 0:
        raise _empty(name, st)


def read_blocks(
    stream: BinaryIO, name: str, st: os.stat_result, max_line: int = MAX_LINE_CHARS, size: int = BLOCK_BYTES
) -> Iterator[str]:
    """Like ``read_lines``, but many lines at a time: blocks of about ``size`` bytes, each
    holding whole lines (ending in a newline; the input's last line may lack one), newlines
    converted to ``\n`` as ``read_lines`` does. For readers of millions of lines (``import``)."""
    for block in read_byte_blocks(stream, name, st, max_line, size):
        yield block.decode("utf-8")


def read_byte_blocks(
    stream: BinaryIO, name: str, st: os.stat_result, max_line: int = MAX_LINE_CHARS, size: int = BLOCK_BYTES
) -> Iterator[bytes]:
    """``read_blocks``' blocks as UTF-8 bytes, without decoding what is ASCII already: bytes that
    are no UTF-8 are replaced (U+FFFD) as the decoder replaces them, so each block is exactly
    ``read_blocks``' block encoded."""
    carry = b""  # the start of a line the next read ends
    lines = 0
    seen = False
    # one read at a time: a pipe gives what it holds (read() would wait for ``size`` bytes, so a
    # slow writer's lines would wait, and a stop asked meanwhile too); a file gives ``size`` bytes
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            data = read(size)
        except OSError as err:
            raise ReportError(f"{name}: cannot read it ({err.strerror})") from None
        final = not data
        text = carry + data if carry else data
        held = b""
        if not final and text.endswith(b"\r"):
            text, held = text[:-1], b"\r"  # perhaps the first half of a \r\n
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = len(text) if final else text.rfind(b"\n") + 1
        out, carry = text[:cut], text[cut:] + held
        if len(carry) > max_line and _chars(carry) > max_line:
            raise ReportError(
                f"{name}: line {lines + 1} is too long (over {max_line >> 20} MiB without a newline)",
                hint="memleak and bpftrace print lines far shorter; is it the right file?",
            )
        if out:
            if not out.isascii():
                # whole lines: no UTF-8 sequence spans the cut, so this is the stream's decoding
                out = out.decode("utf-8", "replace").encode("utf-8")
            lines += _newlines(out)
            seen = True
            yield out
        if final:
            break
    if not seen:
        raise _empty(name, st)


def _chars(head: bytes) -> int:
    """How many characters the start of a line ``head`` decodes to so far (an incomplete UTF-8
    sequence at its end waits for the next read, as an incremental decoder holds it)."""
    return len(codecs.getincrementaldecoder("utf-8")("replace").decode(head))


def _newlines(data: bytes) -> int:
    import numpy as np  # noqa: PLC0415 - only readers of long logs need it (and have it loaded)

    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == ord("\n")))
