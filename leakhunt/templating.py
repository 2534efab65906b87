"""Where the jinja2 templates are, and the two environments that render them.

The templates live in the repository's top-level ``templates/`` and are copied into the wheel as
``leakhunt/templates`` (pyproject's force-include), so both an editable checkout and a plain
``pip install .`` find them.

- ``html_env()``: autoescape on; everything from a target (comm, cmdline, symbols) is hostile text.
- ``text_env()``: for probe scripts and Markdown; StrictUndefined, no autoescape. Values placed into
  probe scripts must be validated or quoted by the caller (see ``leakhunt.probe.bpftrace``).

Both keep the compiled templates in jinja2's bytecode cache (``bytecode_cache``): compiling the
report templates takes a tenth of a second at every run, loading them from the cache a millisecond.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

LOG = logging.getLogger(__name__)


class _QuietCache(jinja2.FileSystemBytecodeCache):
    """jinja2's file cache, where a cache that cannot be read or written only means compiling:
    a full disk, a read-only /tmp or a damaged entry never fails a report."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # damaged or unreadable: compile as if it were not there
            LOG.debug("template cache entry unreadable: %s", bucket.key, exc_info=True)
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            LOG.debug("template cache not writable: %s", self.directory, exc_info=True)


# What decides the code a template compiles to, besides its source.
_COMPILE_SETTINGS = (
    "autoescape",
    "undefined",
    "finalize",
    "optimized",
    "trim_blocks",
    "lstrip_blocks",
    "keep_trailing_newline",
    "newline_sequence",
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "line_statement_prefix",
    "line_comment_prefix",
)


def bytecode_cache(env: jinja2.Environment, directory: str | None = None) -> jinja2.BytecodeCache | None:
    """The compiled-template cache of one environment, or None when there is no safe place for it.

    ``directory`` None: jinja2's per-user directory (``$TMPDIR/_jinja2-cache-UID``), which jinja2
    creates with mode 0700 and refuses (RuntimeError) unless it is owned by this user and nobody else
    can write to it: the cache holds code that leakhunt runs, as root. An entry is keyed by the
    template's name and path and checked against the source's checksum and the Python version, so
    an edited or upgraded template is compiled again. The file names carry a digest of the
    environment's compile settings (autoescaped HTML and plain text compile the same source
    differently), its extensions and jinja2's version."""
    settings = [(name, getattr(env, name, None)) for name in _COMPILE_SETTINGS]
    settings.append(("extensions", sorted(env.extensions)))
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:16]
    pattern = f"leakhunt-{digest}-jinja2-{jinja2.__version__}-%s.cache"
    try:
        return _QuietCache(directory, pattern)
    except (OSError, RuntimeError) as exc:
        LOG.debug("no template cache: %s", exc)
        return None


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
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.bytecode_cache = bytecode_cache(env)
    return env


@cache
def text_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=False,  # noqa: S701 - probe scripts and Markdown; callers quote every value
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.bytecode_cache = bytecode_cache(env)
    return env
