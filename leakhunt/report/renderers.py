"""Every report format, in one registry: the format name -> the ``Renderer`` that writes it.

A renderer knows its format's name, its file ending (and the other endings that name it), whether
its output is binary, which document kinds it applies to, and how to write one document to a
stream (``render(doc, stream, **opts)``: a text stream, or a binary one when ``binary``). It never
opens files: ``report.write_reports`` renders every format first, then writes each file through
the one atomic writer (``outputfile.write_atomic``).

``RENDERERS`` serves investigations, traces and scans; ``DIFF_RENDERERS`` the reports of
``leakhunt diff``. The command-line ``--format`` choices, the file endings and the help texts all
come from these two tables. Adding a format is one class here.

The modules that load slowly (pprof's protobuf, the folded exporter, the scan report) are imported
when a document is rendered in their format, not when the registry is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar, cast

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


_ALL: tuple[type[object], ...] = (Investigation, ScanResult, TraceResult)
_STACKS: tuple[type[object], ...] = (Investigation, TraceResult)


@dataclass(frozen=True)
class HtmlRenderer:
    name: str = "html"
    extension: str = ".html"
    suffixes: tuple[str, ...] = (".htm",)
    binary: bool = False
    kinds: tuple[type[object], ...] = _ALL

    def render(self, doc: Document, stream: IO[Any], **opts: str) -> None:
        if isinstance(doc, ScanResult):
            # report.scan imports this package's html/markdown modules: import it only when needed.
            from leakhunt.report import scan  # noqa: PLC0415

            scan.render_html(doc, stream)
            return
        from leakhunt.report import html  # noqa: PLC0415

        stream.write(html.render_html(doc))


@dataclass(frozen=True)
class MarkdownRenderer:
    name: str = "md"
    extension: str = ".md"
    suffixes: tuple[str, ...] = (".markdown",)
    binary: bool = False
    kinds: tuple[type[object], ...] = _ALL

    def render(self, doc: Document, stream: IO[Any], **opts: str) -> None:
        if isinstance(doc, ScanResult):
            from leakhunt.report import scan  # noqa: PLC0415

            scan.render_md(doc, stream)
            return
        from leakhunt.report import markdown  # noqa: PLC0415

        stream.write(markdown.render_md(doc))


@dataclass(frozen=True)
class JsonRenderer:
    name: str = "json"
    extension: str = ".json"
    suffixes: tuple[str, ...] = ()
    binary: bool = False
    kinds: tuple[type[object], ...] = _ALL

    def render(self, doc: Document, stream: IO[Any], **opts: str) -> None:
        jsonio.dump(doc, stream)


@dataclass(frozen=True)
class FoldedRenderer:
    """``opts``: ``value`` (bytes, growth or count; bytes by default)."""

    name: str = "folded"
    extension: str = ".folded"
    suffixes: tuple[str, ...] = (".collapsed",)
    binary: bool = False
    kinds: tuple[type[object], ...] = _STACKS

    def render(self, doc: Document, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import folded  # noqa: PLC0415 - exports load only when asked for

        folded.render_folded(cast(Investigation | TraceResult, doc), stream, value=opts.get("value", "bytes"))


@dataclass(frozen=True)
class PprofRenderer:
    name: str = "pprof"
    extension: str = ".pb.gz"
    suffixes: tuple[str, ...] = (".pprof",)
    binary: bool = True
    kinds: tuple[type[object], ...] = _STACKS

    def render(self, doc: Document, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import pprof  # noqa: PLC0415 - protobuf loads only when pprof is asked for

        pprof.render_pprof(cast(Investigation | TraceResult, doc), stream)


def _registry(*renderers: Renderer[Any]) -> Mapping[str, Renderer[Any]]:
    return {r.name: r for r in renderers}


# In the order formats are listed in help texts.
RENDERERS: Mapping[str, Renderer[Document]] = _registry(
    HtmlRenderer(), MarkdownRenderer(), JsonRenderer(), FoldedRenderer(), PprofRenderer()
)


# --- diff reports ------------------------------------------------------------------------------------


def _fail_on(opts: Mapping[str, str]) -> FailOn:
    return cast(FailOn, opts.get("fail_on", "any"))


@dataclass(frozen=True)
class DiffTextRenderer:
    """``opts`` of every diff renderer: ``fail_on`` (any, new, never; any by default)."""

    name: str = "text"
    extension: str = ".txt"
    suffixes: tuple[str, ...] = ()
    binary: bool = False
    kinds: tuple[type[object], ...] = (DiffResult,)

    def render(self, doc: DiffResult, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import diffreport  # noqa: PLC0415

        stream.write(diffreport.render_text(doc, _fail_on(opts)))


@dataclass(frozen=True)
class DiffHtmlRenderer:
    name: str = "html"
    extension: str = ".html"
    suffixes: tuple[str, ...] = (".htm",)
    binary: bool = False
    kinds: tuple[type[object], ...] = (DiffResult,)

    def render(self, doc: DiffResult, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import diffreport  # noqa: PLC0415

        stream.write(diffreport.render_html(doc, _fail_on(opts)))


@dataclass(frozen=True)
class DiffMarkdownRenderer:
    name: str = "md"
    extension: str = ".md"
    suffixes: tuple[str, ...] = (".markdown",)
    binary: bool = False
    kinds: tuple[type[object], ...] = (DiffResult,)

    def render(self, doc: DiffResult, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import diffreport  # noqa: PLC0415

        stream.write(diffreport.render_md(doc, _fail_on(opts)))


@dataclass(frozen=True)
class DiffJsonRenderer:
    name: str = "json"
    extension: str = ".json"
    suffixes: tuple[str, ...] = ()
    binary: bool = False
    kinds: tuple[type[object], ...] = (DiffResult,)

    def render(self, doc: DiffResult, stream: IO[Any], **opts: str) -> None:
        from leakhunt.report import diffreport  # noqa: PLC0415

        json.dump(diffreport.to_dict(doc, _fail_on(opts)), stream, indent=1, sort_keys=False)
        stream.write("\n")


DIFF_RENDERERS: Mapping[str, Renderer[DiffResult]] = _registry(
    DiffTextRenderer(), DiffHtmlRenderer(), DiffMarkdownRenderer(), DiffJsonRenderer()
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
