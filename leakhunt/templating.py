"""Where the jinja2 templates are, and the two environments that render them.

The templates live in the repository's top-level ``templates/`` and are copied into the wheel as
``leakhunt/templates`` (pyproject's force-include), so both an editable checkout and a plain
``pip install .`` find them.

- ``html_env()``: autoescape on; everything from a target (comm, cmdline, symbols) is hostile text.
- ``text_env()``: for probe scripts and Markdown; StrictUndefined, no autoescape. Values placed into
  probe scripts must be validated or quoted by the caller (see ``leakhunt.probe.bpftrace``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    """The directory holding the templates (installed package first, then the source tree)."""
    packaged = Path(__file__).resolve().parent / "templates"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / "templates"
    if source.is_dir():
        return source
    raise FileNotFoundError(f"leakhunt templates not found in {packaged} or {source}")


@cache
def html_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def text_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=False,  # noqa: S701 - probe scripts and Markdown; callers quote every value
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
