"""Text from the target made harmless for terminals and text reports.

Process names, command lines, symbols and notes come from the target (``prctl(PR_SET_NAME)``, its
argv, its ELF symbols) or from a pasted log. An escape sequence in them would reach the terminal
raw: ``ESC ] 0 ;`` retitles it, ``ESC [ 2 J`` clears it, a carriage return overwrites the line,
U+202E reverses the text after it. ``neutralize`` shows each such character as ``\\xNN`` /
``\\uNNNN`` instead: C0 controls except tab and newline, DEL, C1 controls and the bidirectional
overrides and isolates. Everything else, including any printable Unicode, is kept.
"""

from __future__ import annotations

import re

__all__ = ["UNSAFE", "escape_json_text", "neutralize"]

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# In JSON text, control characters below 0x20 are already escaped by json.dumps; these are not.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralize(text: str) -> str:
    """``text`` with every terminal control character shown as an escape (see the module)."""
    return UNSAFE.sub(_shown, text)


def escape_json_text(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with DEL, C1 and bidi characters written
    as ``\\uNNNN`` escapes: the same JSON value, harmless when the file is shown on a terminal."""
    if text.isascii() and "\x7f" not in text:  # (the usual case, checked at C speed: 2 MB in 0.1 ms)
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
