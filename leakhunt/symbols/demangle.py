"""C++ symbol names from an object's symbol table (``_ZN3app8Registry3addEm``) -> readable names.

Demangled by binutils' ``c++filt`` in a child process (through the one runner): the names come from
the target's own files, and a demangler crash on a hostile name then ends that child, not leakhunt.
Names that are not Itanium-mangled, or that c++filt is missing for, are returned unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from leakhunt.errors import LeakhuntError
from leakhunt.probe import runner

_MANGLED = re.compile(r"_Z[A-Za-z0-9_.$]{1,4000}")
_BATCH = 200


def demangle_all(names: Iterable[str]) -> dict[str, str]:
    """{mangled: demangled} for every Itanium-mangled name in ``names``."""
    todo = sorted({n for n in names if _MANGLED.fullmatch(n)})
    out: dict[str, str] = {}
    for i in range(0, len(todo), _BATCH):
        batch = todo[i : i + _BATCH]
        try:
            done = runner.run_capture(["c++filt", "--", *batch], timeout=20.0)
        except LeakhuntError:
            return out
        lines = done.stdout.splitlines()
        if done.returncode != 0 or len(lines) != len(batch):
            return out
        for name, text in zip(batch, lines, strict=True):
            if text and text != name:
                out[name] = text
    return out
