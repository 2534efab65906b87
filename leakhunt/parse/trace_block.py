"""Many memleak ``-t`` lines at once: a block of text -> arrays of events (numpy), for ``import``.

A per-line Python parse costs microseconds a line, and a captured trace has millions of lines.
This parser reads a whole block (complete lines) with a fixed number of numpy passes and returns,
per line, whether it is a *plain* memleak tuple, and the fields of the plain events::

    (b'app', 4243, 1, b'...11', 1000.000003, b'alloc entered, size = 128')
    (b'app', 4243, 1, b'...11', 1000.000003, b'alloc exited, size = 128, result = 55d0c0a00040')
    (b'app', 4242, 0, b'...11', 1000.000009, b'free entered, address = 55d0c0a00040, size = 0')

A line is plain when it has exactly that shape: ``(b`` + task (any text) +
``', `` + thread id (1-8 digits, not 0) + ``, `` + cpu + ``, b'`` + flags + ``', `` + timestamp
(``D.D``, at most 15 digits) + ``, b'`` + one of the three messages, with decimal sizes and a
hexadecimal address of at most 16 digits (an allocation's not 0) + ``')``; cpu and flags hold no
quote or comma; at most ``MAX_LINE`` bytes. Every plain line means exactly what
``TraceParser.feed_fields`` makes of it (tests compare the two on generated logs); all other lines
(other tools' lines, notes, tracebacks, tuples of other shapes) are for ``TraceParser``, in order.

How: the positions of every newline, quote and comma come from one pass; the last 13 of a plain
event line (4 of an ``alloc entered`` line) come in a fixed order, and its fields lie between
known ones. Numbers are read from windows of 8 or 16 bytes as 64-bit words, digits checked and
combined eight at a time (SIMD within a register), many lines per numpy operation.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from leakhunt.model import TupleBlock
from leakhunt.parse.trace import MAX_LINE

Ints = npt.NDArray[np.int64]
G = TypeVar("G", bound=np.generic)
Words = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]
Bytes = npt.NDArray[np.uint8]

_PAD = 32  # zero bytes around the block: every window read stays inside the buffer
_WIDTH = 16  # widest number read: 16 digits (sizes below 10**16; 64-bit addresses)
_TID_WIDTH = 8
_NL, _Q, _C = ord("\n"), ord("'"), ord(",")
# the kinds of a line's last 16 separators (its newline last), as two words: a plain event line's
# last 13, an "alloc entered" line's last 4 (the bytes before them: any)
_EVENT_KINDS = np.frombuffer(bytes([0, 0, 0, _Q, _C, _C, _C, _Q, _Q, _C, _C, _Q, _C, _C, _Q, _NL]), np.uint64)
_EVENT_MASK = np.frombuffer(bytes([0, 0, 0]) + b"\xff" * 13, np.uint64)
_ENTERED_KINDS = int.from_bytes(bytes([_Q, _C, _Q, _NL]), "little")
_OPEN = b", b'"  # before a bytes field
_ENTERED = b"alloc entered, size = "
_EXITED = b"alloc exited, size = "
_FREE = b"free entered, address = "
_RESULT = b", result = "
_FREE_SIZE = b", size = "


def _bytes8(byte: int) -> np.uint64:
    return np.uint64(int.from_bytes(bytes([byte]) * 8, "little"))


_HIGH, _LOW7, _ZEROS = _bytes8(0x80), _bytes8(0x7F), _bytes8(ord("0"))
_NIBBLE_HI, _SIXES, _DOTS, _SPACES = _bytes8(0xF0), _bytes8(0x06), _bytes8(ord(".")), _bytes8(0x20)


def _keep_table(width: int) -> Words:
    """[word k][n]: the bytes of word k that belong to a field of n bytes right-aligned in
    ``width`` bytes (0xFF each)."""
    return np.array(
        [
            [
                int.from_bytes(bytes(0xFF if 8 * k + j >= width - n else 0 for j in range(8)), "little")
                for n in range(width + 1)
            ]
            for k in range(width // 8)
        ],
        np.uint64,
    )


_KEEP = {8: _keep_table(8), 16: _keep_table(16)}
_POW10 = 10 ** np.arange(19, dtype=np.int64)


def _u64(buf: Bytes) -> Words:
    """Every 8 bytes of ``buf`` as a 64-bit word, one per byte position (a view, overlapping)."""
    return np.ndarray((len(buf) - 7,), np.uint64, buffer=buf, strides=(1,))


def _words(buf: Bytes, at: Ints, width: int) -> list[Words]:
    """The ``width`` bytes from each position ``at``, as 64-bit words (the first bytes first)."""
    if width == 8:
        return [_u64(buf)[at]]
    # one gather of width bytes per position (a numpy item of that size): faster than one a word
    items = np.ndarray((len(buf) - width + 1,), np.dtype((np.void, width)), buffer=buf, strides=(1,))
    rows = items[at].view(np.uint64).reshape(len(at), width // 8)
    return [rows[:, k] for k in range(width // 8)]


def _matches(rows: list[Words], text: bytes) -> Bools:
    """Whether the words ``rows`` begin with ``text``."""
    words = -(-len(text) // 8)
    want = np.frombuffer(text.ljust(8 * words, b"\0"), np.uint64)
    keep = np.frombuffer((b"\xff" * len(text)).ljust(8 * words, b"\0"), np.uint64)
    ok: Bools = (rows[0] & keep[0]) == want[0]
    for k in range(1, words):
        ok &= (rows[k] & keep[k]) == want[k]
    return ok


def _field(buf: Bytes, start: Ints, end: Ints, width: int) -> tuple[list[Words], Bools]:
    """Each field ``buf[start:end]`` right-aligned in ``width`` bytes, '0' before it, as words
    (the most significant first), and whether it has 1 to ``width`` bytes."""
    n = end - start
    fits = (n >= 1) & (n <= width)
    k = np.where(fits, n, 0)  # (np.clip costs more)
    rows = _words(buf, end - width, width)
    keep = _KEEP[width]
    out = []
    for i in range(width // 8):
        mask = keep[i][k]
        out.append((rows[i] & mask) | (_ZEROS & ~mask))
    return out, fits


def _is_decimal(word: Words) -> Bools:
    """Whether all 8 bytes of each word are '0'-'9' (0x30-0x39: high nibble 3 before and after
    adding 6, which carries out of the low nibble only above 9)."""
    ok: Bools = ((word & _NIBBLE_HI) == _ZEROS) & (((word + _SIXES) & _NIBBLE_HI) == _ZEROS)
    return ok


def _eight_digits(word: Words) -> Words:
    """The value of 8 decimal digits, the first in the lowest byte (pairs, then quads, then all)."""
    v = word - _ZEROS
    v = v * np.uint64(10) + (v >> np.uint64(8))
    lo = (v & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1_000_000 << 32))
    hi = ((v >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(1 + (10_000 << 32))
    return (lo + hi) >> np.uint64(32)


def _decimal_words(words: list[Words]) -> tuple[Ints, Bools]:
    ok = _is_decimal(words[0])
    value = _eight_digits(words[0]).astype(np.int64)
    for word in words[1:]:
        ok &= _is_decimal(word)
        value = value * 100_000_000 + _eight_digits(word).astype(np.int64)
    return value, ok


def _decimal(buf: Bytes, start: Ints, end: Ints, width: int = _WIDTH) -> tuple[Ints, Bools]:
    """Decimal numbers in ``buf[start:end]`` (1..width digits) and whether each is one."""
    words, fits = _field(buf, start, end, width)
    value, ok = _decimal_words(words)
    return value, ok & fits


def _hex(buf: Bytes, start: Ints, end: Ints) -> tuple[Words, Bools]:
    """Hexadecimal numbers in ``buf[start:end]`` (1..16 digits) and whether each is one."""
    words, ok = _field(buf, start, end, _WIDTH)
    value = np.zeros(len(start), np.uint64)
    for word in words:
        # a hex digit is '0'-'9' or 'a'-'f' once 0x20 is set (bytes below 0x80 only: no carries)
        lower = word | _SPACES
        digit = ((lower + _bytes8(0x80 - 0x30)) & ~(lower + _bytes8(0x7F - 0x39))) | (
            (lower + _bytes8(0x80 - 0x61)) & ~(lower + _bytes8(0x7F - 0x66))
        )
        ok &= ((word & _HIGH) == 0) & ((digit & _HIGH) == _HIGH)
        # nibbles n0..n7 (n0 the most significant): low 4 bits, plus 9 for a letter (0x40 set)
        x = (word & _bytes8(0x0F)) + ((word >> np.uint64(6)) & _bytes8(0x01)) * np.uint64(9)
        # -> 16-bit lanes n0n1, n2n3, ... -> 32 bits
        y = ((x << np.uint64(4)) & np.uint64(0x00F000F000F000F0)) | (
            (x >> np.uint64(8)) & np.uint64(0x000F000F000F000F)
        )
        part = (
            ((y & np.uint64(0xFF)) << np.uint64(24))
            | (((y >> np.uint64(16)) & np.uint64(0xFF)) << np.uint64(16))
            | (((y >> np.uint64(32)) & np.uint64(0xFF)) << np.uint64(8))
            | ((y >> np.uint64(48)) & np.uint64(0xFF))
        )
        value = (value << np.uint64(32)) | part
    return value, ok


def _dot_bits(word: Words) -> Words:
    """0x80 in each byte of ``word`` that is a dot."""
    x = word ^ _DOTS
    nonzero = (((x & _LOW7) + _LOW7) | x) & _HIGH
    return ~nonzero & _HIGH


def _timestamp(buf: Bytes, start: Ints, end: Ints) -> tuple[npt.NDArray[np.float64], Bools]:
    """``D.D`` in ``buf[start:end]`` (at most 15 digits) as the floats ``float(text)`` gives."""
    words, ok = _field(buf, start, end, _WIDTH)
    dots = [_dot_bits(w) for w in words]
    ok &= np.bitwise_count(dots[0]) + np.bitwise_count(dots[1]) == 1
    one = np.uint64(1)
    at = np.where(
        dots[0] != 0,
        np.bitwise_count(dots[0] - one) // 8,
        8 + np.bitwise_count(dots[1] - one) // 8,
    ).astype(np.int64)
    place = _WIDTH - 1 - at  # digits after the dot
    ok &= (place >= 1) & (at > _WIDTH - (end - start))  # digits on both sides
    swap = np.uint64(ord(".") ^ ord("0"))
    value, digits_ok = _decimal_words(
        [w ^ ((d >> np.uint64(7)) * swap) for w, d in zip(words, dots, strict=True)]
    )
    ok &= digits_ok
    scale = _POW10[np.where(ok, place, 1)]
    digits = value // (scale * 10) * scale + value % scale  # the dot was read as a 0 digit
    # both exact below 2**53: one correctly rounded division, as float(text) rounds
    return digits.astype(np.float64) / scale.astype(np.float64), ok


def _runs(values: npt.NDArray[G], at: Ints, k: int) -> npt.NDArray[G]:
    """``values[at + j]`` for j in 0..k-1, a row per position (each row copied at once)."""
    size = values.itemsize
    count = max(len(values) - k + 1, 0)
    rows = np.ndarray((count,), np.dtype((np.void, k * size)), buffer=values, strides=(size,))
    return rows[at].view(values.dtype).reshape(len(at), k)


def _lines(data: bytes) -> tuple[Bytes, Ints, Bytes, Ints, Ints]:
    """The padded buffer, every separator's position and kind (16 zeros first), the separator
    index of each line's newline, and each line's first byte (positions in the buffer)."""
    tail = 0 if data.endswith(b"\n") or not data else 1
    buf = np.empty(len(data) + tail + 2 * _PAD, np.uint8)  # (cheaper than joining bytes)
    buf[:_PAD] = 0
    buf[_PAD : _PAD + len(data)] = np.frombuffer(data, np.uint8)
    buf[_PAD + len(data) :] = 0
    if tail:
        buf[_PAD + len(data)] = _NL
    sep = np.flatnonzero((buf == _NL) | (buf == _Q) | (buf == _C))
    kinds = np.zeros(16 + len(sep), np.uint8)
    kinds[16:] = buf[sep]
    newline = np.flatnonzero(kinds[16:] == _NL)
    ends = sep[newline]
    starts = np.concatenate(([_PAD], ends[:-1] + 1)) if len(ends) else ends
    return buf, sep, kinds, newline, starts


def parse_tuple_block(data: bytes) -> TupleBlock:
    """The lines of ``data`` (split at ``\\n``; a last line without one counts) -> a TupleBlock.

    Pure, and never raises: bytes that are no plain tuple only make their line not plain.
    """
    buf, sep, kind_of, newline, starts = _lines(data)
    ends = sep[newline]
    n = len(ends)
    length = ends - starts
    fits = (length <= MAX_LINE) & (length >= 30) & (buf[starts] == ord("(")) & (buf[starts + 1] == ord("b"))
    fits &= buf[ends - 1] == ord(")")
    plain = np.zeros(n, np.bool_)
    candidates = np.flatnonzero(fits)
    # the kinds of each line's last 16 separators (the previous lines' or the zeros' before it)
    kinds = _runs(kind_of, newline[candidates] + 1, 16).view(np.uint64)
    entered = candidates[kinds[:, 1] >> np.uint64(32) == _ENTERED_KINDS]
    plain[entered] = _entered(buf, sep, newline[entered])
    events = candidates[
        ((kinds[:, 0] & _EVENT_MASK[0]) == _EVENT_KINDS[0]) & (kinds[:, 1] == _EVENT_KINDS[1])
    ]
    p = _runs(sep, newline[events] - 12, 13)  # their last 13 separators' positions
    q1, c2, c3, c4, _, q3, c7, c8, q4, _, c11, q5, nl = (p[:, j] for j in range(13))
    # the bytes around them: "', " after the task and the flags, ", " after the thread id, ", b'"
    # before the flags and the message (the separators between follow: q1 == c2 - 1, q2 == c4 + 3,
    # c7 == q3 + 1, q4 == c8 + 3); the message's and the middle's texts hold c10's and c11's space
    ok: Bools = q5 == nl - 2
    for at, text in ((q1, b"', "), (q3, b"', "), (c3, b", "), (c4, b", b'")):
        ok &= _matches(_words(buf, at, 8), text)
    tid, tid_ok = _decimal(buf, c2 + 2, c3, _TID_WIDTH)
    ok &= tid_ok & (tid > 0)
    t, t_ok = _timestamp(buf, c7 + 2, c8)
    ok &= t_ok
    msg = q4 + 1
    # ", b'" at c8 and the message after it, in one read
    message, middle = _words(buf, c8, 32), _words(buf, c11, 16)
    exited = ok & _matches(message, _OPEN + _EXITED) & _matches(middle, _RESULT)
    freed = ok & _matches(message, _OPEN + _FREE) & _matches(middle, _FREE_SIZE)
    # alloc exited: size (decimal) then result (hex); free entered: address (hex) then size
    size, size_ok = _decimal(
        buf, np.where(exited, msg + len(_EXITED), c11 + len(_FREE_SIZE)), np.where(exited, c11, q5)
    )
    address, address_ok = _hex(
        buf, np.where(exited, c11 + len(_RESULT), msg + len(_FREE)), np.where(exited, q5, c11)
    )
    event = (exited | freed) & size_ok & address_ok & (~exited | (address != 0))
    exited &= event
    plain[events] = event
    return TupleBlock(
        lines=n,
        starts=starts - _PAD,
        ends=ends - _PAD,
        plain=plain,
        line=events[event],
        is_alloc=exited[event],
        tid=tid[event],
        t=t[event],
        size=np.where(exited, size, 0)[event],
        address=address[event],
    )


def _entered(buf: Bytes, sep: Ints, newline: Ints) -> Bools:
    """Which of these lines (their last separators: quote, comma, quote, newline) are ``alloc
    entered`` tuples (that TraceParser skips): ``, b'`` opens the message, the closing quote ends
    the line."""
    q4, q5 = sep[newline - 3], sep[newline - 1]
    ok: Bools = q5 == sep[newline] - 2
    return ok & _matches(_words(buf, q4 - 3, 32), _OPEN + _ENTERED)
