"""Reports: one small interface over every output format.

``render(doc, fmt, stream)`` writes one document (an Investigation, ScanResult or TraceResult) in one
format to a stream; renderers never open files. ``write_reports(doc, output_dir, formats)`` is what the
commands call: it redacts secrets, renders every format in memory, then writes each file atomically
(temporary file + rename in the same directory) with mode 0600, and returns the paths.

Formats and who renders them:

=========  ==========================  ============================================
format     document kinds              module
=========  ==========================  ============================================
html       investigation, trace, scan  report.html (scan: report.scan.render_html)
md         investigation, trace, scan  report.markdown (scan: report.scan.render_md)
json       all                         report.jsonio
folded     investigation, trace        report.folded.render_folded (text)
pprof      investigation, trace        report.pprof.render_pprof (binary, .pb.gz)
=========  ==========================  ============================================
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from leakhunt.errors import UsageError
from leakhunt.model import Investigation, ScanResult, TraceResult
from leakhunt.outputfile import write_atomic
from leakhunt.report import html, jsonio, markdown
from leakhunt.report.jsonio import Document, kind_of
from leakhunt.report.redact import redact as redact_doc

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "Document",
    "default_stem",
    "make_output_dir",
    "parse_formats",
    "render",
    "render_bytes",
    "rescue_report",
    "write_reports",
]

# Output file extension per format, in the order formats are listed in help texts.
EXTENSIONS: dict[str, str] = {
    "html": ".html",
    "md": ".md",
    "json": ".json",
    "folded": ".folded",
    "pprof": ".pb.gz",
}
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)
BINARY_FORMATS = frozenset({"pprof"})
_APPLIES: dict[str, tuple[type[object], ...]] = {
    "html": (Investigation, ScanResult, TraceResult),
    "md": (Investigation, ScanResult, TraceResult),
    "json": (Investigation, ScanResult, TraceResult),
    "folded": (Investigation, TraceResult),
    "pprof": (Investigation, TraceResult),
}


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"html,md"`` (or a list of such) -> ("html", "md"), validated, duplicates removed."""
    parts = [text] if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in parts:
        for name in part.split(","):
            fmt = name.strip().lower()
            if fmt == "markdown":
                fmt = "md"
            if not fmt:
                continue
            if fmt not in EXTENSIONS:
                raise UsageError(
                    f"unknown report format {name.strip()!r}",
                    hint=f"choose among {', '.join(FORMATS)} (comma-separated, e.g. --format html,md,json)",
                )
            if fmt not in out:
                out.append(fmt)
    if not out:
        raise UsageError("no report format given", hint=f"choose among {', '.join(FORMATS)}")
    return tuple(out)


def _check_applies(doc: Document, fmt: str) -> None:
    if fmt not in EXTENSIONS:
        raise UsageError(f"unknown report format {fmt!r}", hint=f"choose among {', '.join(FORMATS)}")
    if not isinstance(doc, _APPLIES[fmt]):
        kinds = ", ".join(sorted(jsonio.KINDS[k] for k in _APPLIES[fmt]))
        raise UsageError(
            f"format {fmt!r} does not apply to a {kind_of(doc)} report (it needs call stacks: {kinds})",
            hint="use --format html,md,json for scans",
        )


def _render_text(doc: Document, fmt: str) -> str:
    if fmt == "json":
        return jsonio.dumps(doc)
    if isinstance(doc, ScanResult) and fmt in ("html", "md"):
        # report.scan imports this package's html/markdown modules: import it only when needed.
        from leakhunt.report import scan  # noqa: PLC0415

        buf = io.StringIO()
        (scan.render_html if fmt == "html" else scan.render_md)(doc, buf)
        return buf.getvalue()
    if fmt == "html":
        return html.render_html(doc)
    if fmt == "md":
        return markdown.render_md(doc)
    if fmt == "folded" and not isinstance(doc, ScanResult):
        from leakhunt.report import folded  # noqa: PLC0415 - exports load only when asked for

        buf = io.StringIO()
        folded.render_folded(doc, buf)
        return buf.getvalue()
    raise UsageError(f"format {fmt!r} is not a text format")


def render_bytes(doc: Document, fmt: str) -> bytes:
    """The document in one format, as the bytes a file of that format holds (text is UTF-8)."""
    _check_applies(doc, fmt)
    if fmt == "pprof" and not isinstance(doc, ScanResult):
        from leakhunt.report import pprof  # noqa: PLC0415 - protobuf loads only when pprof is asked for

        buf = io.BytesIO()
        pprof.render_pprof(doc, buf)
        return buf.getvalue()
    return _render_text(doc, fmt).encode("utf-8")


def render(doc: Document, fmt: str, stream: IO[str] | IO[bytes]) -> None:
    """Write ``doc`` in format ``fmt`` (html, md, json, folded, pprof) to a text or binary stream.

    Raises UsageError for an unknown format, a format that does not apply to the document's kind
    (folded/pprof of a scan), or binary pprof output asked for on a text stream.
    """
    _check_applies(doc, fmt)
    is_text = isinstance(stream, io.TextIOBase)
    if fmt in BINARY_FORMATS:
        if is_text:
            binary = getattr(stream, "buffer", None)
            if binary is None:
                raise UsageError(
                    "pprof output is binary", hint="write it to a file (-o FILE or --output-dir)"
                )
            stream.flush()
            binary.write(render_bytes(doc, fmt))
            return
        cast(IO[bytes], stream).write(render_bytes(doc, fmt))
        return
    text = _render_text(doc, fmt)
    if is_text:
        cast(IO[str], stream).write(text)
    else:
        cast(IO[bytes], stream).write(text.encode("utf-8"))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_part(text: str, limit: int = 32) -> str:
    # comm is chosen by the target (prctl PR_SET_NAME): never let it pick a path or hide a file.
    part = _UNSAFE.sub("_", text).strip("._-")[:limit]
    return part or "unknown"


def _stamp(started_at: str) -> str:
    try:
        when = datetime.fromisoformat(started_at)
    except ValueError:
        when = datetime.now(UTC)
    return when.strftime("%Y%m%d-%H%M%S")


def default_stem(doc: Document) -> str:
    """``leakhunt-<kind>-<comm>-<pid>-<YYYYmmdd-HHMMSS>`` (scans: ``leakhunt-scan-<host>-<time>``)."""
    stamp = _stamp(doc.run.started_at)
    if isinstance(doc, ScanResult):
        host = f"{_safe_part(doc.run.host)}-" if doc.run.host else ""
        return f"leakhunt-scan-{host}{stamp}"
    return f"leakhunt-{kind_of(doc)}-{_safe_part(doc.target.comm)}-{doc.target.pid}-{stamp}"


def make_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` (and its parents) for reports; UsageError when that is not possible."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{output_dir} exists and is not a directory", hint="choose another --output-dir")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"cannot create {output_dir}: {err.strerror}", hint="choose another --output-dir"
        ) from None


def rescue_report(doc: Document, *, redact: bool = True) -> Path | None:
    """Save ``doc`` as JSON in the temporary folder (else the home or current folder) when its
    reports could not be written; the path, or None when nowhere was writable."""
    data = render_bytes(redact_doc(doc) if redact else doc, "json")
    for folder in (tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd()):
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f"{default_stem(doc)}-rescued-", suffix=".json")
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(name)
            continue
        return Path(name)
    return None


def write_reports(
    doc: Document,
    output_dir: Path,
    formats: Sequence[str],
    *,
    stem: str | None = None,
    redact: bool = True,
) -> list[Path]:
    """Write ``doc`` in each format to ``output_dir/<stem>.<ext>``; returns the paths written.

    Secrets in command lines are removed first unless ``redact`` is False. Every format is rendered
    before any file is written, so a renderer's error leaves no partial set of reports behind.
    Files are replaced atomically and are readable by their owner only (0600).
    """
    fmts = parse_formats(formats)
    for fmt in fmts:
        _check_applies(doc, fmt)
    if redact:
        doc = redact_doc(doc)
    stem = stem or default_stem(doc)
    if "/" in stem or stem in ("", ".", ".."):
        raise UsageError(f"bad report name {stem!r}", hint="a report name is a file name, not a path")
    rendered = [(fmt, render_bytes(doc, fmt)) for fmt in fmts]
    make_output_dir(output_dir)
    paths: list[Path] = []
    for fmt, data in rendered:
        path = output_dir / f"{stem}{EXTENSIONS[fmt]}"
        write_atomic(path, data, hint="choose another --output-dir")
        paths.append(path)
    return paths
