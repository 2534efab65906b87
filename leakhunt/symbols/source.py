"""The source lines around a finding's allocating line, for the HTML report.

The path comes from the target's own DWARF, and leakhunt usually runs as root: only regular files
with a source-code extension that everybody may read are shown (a hostile binary could otherwise
name /etc/shadow as its source and have its lines copied into a report meant for a ticket).
"""

from __future__ import annotations

import os
import stat

from leakhunt.model import Frame, SourceSnippet, Stack

CONTEXT = 3  # lines shown before and after
MAX_LINE_CHARS = 300
MAX_FILE_BYTES = 8 << 20
SOURCE_SUFFIXES = frozenset(
    [
        ".c",
        ".cc",
        ".cpp",
        ".cxx",
        ".c++",
        ".h",
        ".hh",
        ".hpp",
        ".hxx",
        ".inl",
        ".ipp",
        ".tcc",
        ".m",
        ".mm",
        ".rs",
        ".go",
        ".s",
        ".S",
        ".cu",
        ".f",
        ".f90",
        ".zig",
        ".d",
    ]
)


def allocating_frame(stack: Stack) -> Frame | None:
    """The innermost frame with a source line in the program's own code (not libc, libstdc++ or
    code from a system header such as std::make_unique: ``Frame.is_runtime``)."""
    for fr in stack.frames:
        if fr.file and fr.line and not fr.is_runtime:
            return fr
    return None


def read_snippet(file: str, line: int, context: int = CONTEXT) -> SourceSnippet:
    """Lines ``line - context .. line + context`` of ``file``, or the reason they cannot be shown."""
    _, ext = os.path.splitext(file)
    if ext not in SOURCE_SUFFIXES:
        return SourceSnippet(file, line, error="not shown: not a source file name")
    try:
        st = os.stat(file)
    except OSError as err:
        return SourceSnippet(file, line, error=f"source not readable here: {err.strerror or err}")
    if not stat.S_ISREG(st.st_mode):
        return SourceSnippet(file, line, error="not shown: not a regular file")
    if not st.st_mode & stat.S_IROTH:
        return SourceSnippet(file, line, error="not shown: the file is not readable by everybody")
    if st.st_size > MAX_FILE_BYTES:
        return SourceSnippet(file, line, error="not shown: the file is larger than 8 MiB")
    try:
        with open(file, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_FILE_BYTES)
    except OSError as err:
        return SourceSnippet(file, line, error=f"source not readable here: {err.strerror or err}")
    all_lines = text.splitlines()
    if not 1 <= line <= len(all_lines):
        return SourceSnippet(
            file, line, error=f"the file has {len(all_lines)} lines: it changed since the build"
        )
    first = max(1, line - context)
    last = min(len(all_lines), line + context)
    shown = tuple(x[:MAX_LINE_CHARS] for x in all_lines[first - 1 : last])
    return SourceSnippet(file, line, first, shown)
