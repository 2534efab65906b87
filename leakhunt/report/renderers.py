"""Every report format, in one registry: the format name -> the ``Renderer`` that writes it.

A renderer knows its format's name, its file ending (and the other endings that name it), whether
its output is binary, which document kinds it applies to, and how to write one document to a
stream (``render(doc, stream, **opts)``: a text stream, or a binary one when ``binary``). It never
opens files: ``report.write_reports`` renders every format first, then writes each file through
the one atomic writer (``outputfile.write_atomic``).

``RENDERERS`` serves investigations, traces and scans; ``DIFF_RENDERERS`` the reports of
``leakhunt diff``. The command-line ``--format`` choices, the file endings and the help texts all
come from these two tables. Adding a format is one write function and one ``Format`` entry here.

The modules that load slowly (pprof's protobuf, the folded exporter, the scan report) are imported
when a document is rendered in their format, not when the registry is built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Generic, Protocol, TypeVar, cast

from leakhunt.analyze.diff import DiffResult, FailOn
from leakhunt.model import Investigation, ScanResult, TraceResult
from leakhunt.report import jsonio
from leakhunt.report.jsonio import Document

D_contra = TypeVar("D_contra", contravariant=True)


class Renderer(Protocol[D_contra]):
    """One output format (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def extension(self) -> str: ...

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Other file name endings that name this format (``.htm``, ``.collapsed``)."""
        ...

    @property
    def binary(self) -> bool: ...

    @property
    def kinds(self) -> tuple[type[object], ...]: ...

    def render(self, doc: D_contra, stream: IO[Any], **opts: str) -> None:
        """Write ``doc`` to ``stream`` (IO[bytes] when ``binary``, else IO[str])."""
        ...


D = TypeVar("D")


@dataclass(frozen=True)
class Format(Generic[D]):
    """A ``Renderer`` made of its fields and one write function."""

    name: str
    extension: str
    write: Callable[[D, IO[Any], Mapping[str, str]], None]
    kinds: tuple[type[object], ...]
    suffixes: tuple[str, ...] = ()
    binary: bool = False

    def render(self, doc: D, stream: IO[Any], **opts: str) -> None:
        self.write(doc, stream, opts)


_ALL: tuple[type[object], ...] = (Investigation, ScanResult, TraceResult)
_STACKS: tuple[type[object], ...] = (Investigation, TraceResult)


def _html(doc: Document, stream: IO[Any], opts: Mapping[str, str]) -> None:
    if isinstance(doc, ScanResult):
        # report.scan imports this package's html/markdown modules: import it only when needed.
        from leakhunt.report import scan  # noqa: PLC0415

        scan.render_html(doc, stream)
        return
    from leakhunt.report import html  # noqa: PLC0415

    stream.write(html.render_html(doc))


def _markdown(doc: Document, stream: IO[Any], opts: Mapping[str, str]) -> None:
    if isinstance(doc, ScanResult):
        from leakhunt.report import scan  # noqa: PLC0415

        scan.render_md(doc, stream)
        return
    from leakhunt.report import markdown  # noqa: PLC0415

    stream.write(markdown.render_md(doc))


def _json(doc: Document, stream: IO[Any], opts: Mapping[str, str]) -> None:
    jsonio.dump(doc, stream)


def _folded(doc: Document, stream: IO[Any], opts: Mapping[str, str]) -> None:
    """``opts``: ``value`` (bytes, growth or count; bytes by default)."""
    from leakhunt.report import folded  # noqa: PLC0415 - exports load only when asked for

    folded.render_folded(cast(Investigation | TraceResult, doc), stream, value=opts.get("value", "bytes"))


def _pprof(doc: Document, stream: IO[Any], opts: Mapping[str, str]) -> None:
    from leakhunt.report import pprof  # noqa: PLC0415 - protobuf loads only when pprof is asked for

    pprof.render_pprof(cast(Investigation | TraceResult, doc), stream)


def _registry(*renderers: Renderer[D]) -> Mapping[str, Renderer[D]]:
    return {r.name: r for r in renderers}


# In the order formats are listed in help texts.
RENDERERS: Mapping[str, Renderer[Document]] = _registry(
    Format("html", ".html", _html, _ALL, suffixes=(".htm",)),
    Format("md", ".md", _markdown, _ALL, suffixes=(".markdown",)),
    Format("json", ".json", _json, _ALL),
    Format("folded", ".folded", _folded, _STACKS, suffixes=(".collapsed",)),
    Format("pprof", ".pb.gz", _pprof, _STACKS, suffixes=(".pprof",), binary=True),
)


# --- diff reports: every one takes ``fail_on`` (any, new, never; any by default) -------------------


def _fail_on(opts: Mapping[str, str]) -> FailOn:
    return cast(FailOn, opts.get("fail_on", "any"))


def _diff_text(doc: DiffResult, stream: IO[Any], opts: Mapping[str, str]) -> None:
    from leakhunt.report import diffreport  # noqa: PLC0415

    stream.write(diffreport.render_text(doc, _fail_on(opts)))


def _diff_html(doc: DiffResult, stream: IO[Any], opts: Mapping[str, str]) -> None:
    from leakhunt.report import diffreport  # noqa: PLC0415

    stream.write(diffreport.render_html(doc, _fail_on(opts)))


def _diff_markdown(doc: DiffResult, stream: IO[Any], opts: Mapping[str, str]) -> None:
    from leakhunt.report import diffreport  # noqa: PLC0415

    stream.write(diffreport.render_md(doc, _fail_on(opts)))


def _diff_json(doc: DiffResult, stream: IO[Any], opts: Mapping[str, str]) -> None:
    from leakhunt.report import diffreport  # noqa: PLC0415

    json.dump(diffreport.to_dict(doc, _fail_on(opts)), stream, indent=1, sort_keys=False)
    stream.write("\n")


_DIFF: tuple[type[object], ...] = (DiffResult,)
DIFF_RENDERERS: Mapping[str, Renderer[DiffResult]] = _registry(
    Format("text", ".txt", _diff_text, _DIFF),
    Format("html", ".html", _diff_html, _DIFF, suffixes=(".htm",)),
    Format("md", ".md", _diff_markdown, _DIFF, suffixes=(".markdown",)),
    Format("json", ".json", _diff_json, _DIFF),
)


def format_of_name(path: str, renderers: Mapping[str, Renderer[Any]]) -> str | None:
    """The format a file name's ending names among ``renderers`` (``leak.pb.gz`` -> pprof), or None."""
    name = path.lower()
    endings = sorted(
        ((ending, r.name) for r in renderers.values() for ending in (r.extension, *r.suffixes)),
        key=lambda pair: -len(pair[0]),  # longest first: ".pb.gz" before ".gz"
    )
    for ending, fmt in endings:
        if name.endswith(ending):
            return fmt
    return None
