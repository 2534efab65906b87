"""Rendering bpftrace scripts from templates/probe/*.bt.j2 with validated values only.

A bpftrace script is code run as root in the kernel: nothing from the user or from the target
(paths, names) may reach it unchecked. Every value placed in a template goes through one of the
validators below first, which raise ``UsageError`` naming the bad value; ``render_probe`` refuses
values that did not (it accepts only ``int``, ``bool``, ``ScriptPath`` and ``Identifier``).

    >>> render_probe("investigate", pid=positive_int(1234, "pid"), libc=safe_path("/lib/libc.so.6"), ...)

Paths are quoted the way bpftrace's probe syntax needs: a probe spec ``uprobe:PATH:func`` cannot
carry quotes in 0.17, so a path is allowed only when made of characters that need none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from leakhunt.errors import UsageError
from leakhunt.model import ALLOCATOR_ROLES, AllocatorHook
from leakhunt.templating import text_env

# Characters that are safe unquoted in a bpftrace probe spec and in a shell word. No ':' (it
# separates the probe's fields), no spaces, no quotes, no '*' or '?' (wildcards), no newline.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+@=,-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class ScriptPath:
    """An absolute path checked by ``safe_path`` (only then may it enter a script)."""

    value: str

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Identifier:
    """A C identifier checked by ``identifier`` (function names for probes)."""

    value: str

    def __str__(self) -> str:
        return self.value


def safe_path(path: str | Path, what: str = "path", *, must_exist: bool = True) -> ScriptPath:
    """An absolute path that may appear in a probe spec; UsageError if it could inject code."""
    text = str(path)
    if not _SAFE_PATH.fullmatch(text) or "/../" in text or text.endswith("/.."):
        raise UsageError(
            f"{what} {text!r} cannot be used in a bpftrace probe",
            hint="give an absolute path made of letters, digits and / . _ - + @ = , only "
            "(a symlink without spaces or colons works)",
        )
    if must_exist and not Path(text).is_file():
        raise UsageError(f"{what} {text!r} does not exist or is not a file")
    return ScriptPath(text)


def positive_int(value: object, what: str = "value", *, allow_zero: bool = False) -> int:
    """An int > 0 (or >= 0) that fits bpftrace's 64-bit integers; UsageError otherwise."""
    if isinstance(value, bool):
        raise UsageError(f"{what} must be a number, not {value!r}")
    if isinstance(value, str):
        if not re.fullmatch(r"\d{1,19}", value.strip()):
            raise UsageError(f"{what} must be a whole number, not {value!r}")
        value = int(value.strip())
    if not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number, not {value!r}")
    low = 0 if allow_zero else 1
    if value < low or value > _MAX_INT:
        raise UsageError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def identifier(name: str, what: str = "name") -> Identifier:
    """A C identifier (function name); UsageError for anything else."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise UsageError(f"{what} {name!r} is not a C identifier")
    return Identifier(name)


@dataclass(frozen=True)
class Hook:
    """An allocator function to probe: a checked identifier and one of ``model.ALLOCATOR_ROLES``."""

    symbol: Identifier
    role: str


def hook(h: AllocatorHook) -> Hook:
    """A hook for a template; UsageError for a symbol that is not an identifier or an unknown role."""
    if h.role not in ALLOCATOR_ROLES:
        raise UsageError(f"unknown allocator role {h.role!r}")
    return Hook(identifier(h.symbol, "allocator function"), h.role)


TemplateValue = int | bool | ScriptPath | Identifier | tuple[Identifier, ...] | tuple[Hook, ...]


def render_probe(name: str, **values: TemplateValue) -> str:
    """Render templates/probe/NAME.bt.j2 with ``values``.

    Only validated types are accepted (ints, bools, ``ScriptPath``, ``Identifier`` and tuples of
    identifiers or of ``Hook``): a plain ``str`` raises TypeError, so an unchecked string can never
    reach a script.
    """
    return _render(name, "bt", values)


def render_bpf_c(name: str, **values: TemplateValue) -> str:
    """Render templates/probe/NAME.bpf.c.j2 (BPF C for BCC) with ``values``, checked like ``render_probe``."""
    return _render(name, "bpf.c", values)


def _render(name: str, suffix: str, values: dict[str, TemplateValue]) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise UsageError(f"no probe template named {name!r}")
    for key, value in values.items():
        _check_value(key, value)
    env = text_env()
    try:
        template = env.get_template(f"probe/{name}.{suffix}.j2")
    except Exception as err:  # jinja2.TemplateNotFound and friends
        raise UsageError(f"no probe template named {name!r}") from err
    return template.render(**values)


def _check_value(key: str, value: object) -> None:
    if isinstance(value, bool | ScriptPath | Identifier):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise UsageError(f"{key}={value} does not fit a 64-bit integer")
        return
    if isinstance(value, tuple) and all(isinstance(v, Identifier) for v in value):
        return
    if isinstance(value, tuple) and all(
        isinstance(v, Hook) and isinstance(v.symbol, Identifier) and v.role in ALLOCATOR_ROLES for v in value
    ):
        return
    raise TypeError(
        f"template value {key}={value!r} was not validated (use safe_path, positive_int or identifier)"
    )
