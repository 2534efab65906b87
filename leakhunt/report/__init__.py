"""Reports: one small interface over every output format.

``render(doc, fmt, stream, **opts)`` writes one document (an Investigation, ScanResult, TraceResult,
or the DiffResult of ``leakhunt diff``) in one format to a stream; renderers never open files.
Which renderer writes which format is said in one place, ``report.renderers`` (``RENDERERS``,
``DIFF_RENDERERS``): the format names, file endings and the ``--format`` choices come from it.
``write_reports(doc, output_dir, formats)`` is what the commands call: it redacts secrets, renders
every format in memory, then writes each file through the one atomic writer
(``outputfile.write_atomic``: temporary file, fsync, rename in the same directory; mode 0600), and
returns the paths.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from leakhunt import LOG
from leakhunt.analyze.diff import DiffResult
from leakhunt.errors import UsageError
from leakhunt.model import ScanResult
from leakhunt.outputfile import write_atomic
from leakhunt.report import jsonio
from leakhunt.report.jsonio import Document, kind_of
from leakhunt.report.redact import redact as redact_doc
from leakhunt.report.renderers import DIFF_RENDERERS, RENDERERS, Renderer

__all__ = [
    "DIFF_FORMATS",
    "EXTENSIONS",
    "FORMATS",
    "Document",
    "Renderer",
    "default_stem",
    "formats_for",
    "make_output_dir",
    "parse_formats",
    "render",
    "render_bytes",
    "renderer",
    "rescue_report",
    "write_rendered",
    "write_reports",
]

# Output file extension per format, in the order formats are listed in help texts.
EXTENSIONS: dict[str, str] = {name: r.extension for name, r in RENDERERS.items()}
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)
DIFF_FORMATS: tuple[str, ...] = tuple(DIFF_RENDERERS)


def formats_for(kind: type[object]) -> tuple[str, ...]:
    """The formats that apply to a document kind (``ScanResult`` -> html, md, json)."""
    return tuple(name for name, r in RENDERERS.items() if kind in r.kinds)


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


def preload_templates(kind: Literal["trace", "investigation"]) -> None:
    """Load the HTML and Markdown renderers of a trace or an investigation and compile their
    templates (jinja2 does it at a template's first use: a tenth of a second) in a background
    thread, while the caller computes the trace or probes. Only a head start: rendering loads
    whatever is missing, and says what is wrong if anything is."""

    def load() -> None:
        try:
            from leakhunt.report import html, markdown  # noqa: F401, PLC0415 - html: its imports
            from leakhunt.templating import html_env  # noqa: PLC0415

            html_env().get_template(f"report/{kind}.html.j2")
            markdown.environment().get_template(f"report/{kind}.md.j2")
        except Exception:  # rendering reports it
            LOG.debug("preloading the %s templates failed", kind, exc_info=True)

    # not a daemon: the interpreter waits for it (at most that tenth of a second) before it exits
    threading.Thread(target=load, name="leakhunt-templates", daemon=False).start()


def renderer(doc: Document | DiffResult, fmt: str) -> Renderer[Any]:
    """The renderer of ``fmt`` for ``doc``; UsageError for an unknown format or one that does not
    apply to the document's kind (folded/pprof of a scan)."""
    if isinstance(doc, DiffResult):
        found = DIFF_RENDERERS.get(fmt)
        if found is None:
            raise UsageError(f"unknown diff format {fmt!r}", hint=f"choose among {', '.join(DIFF_FORMATS)}")
        return found
    chosen = RENDERERS.get(fmt)
    if chosen is None:
        raise UsageError(f"unknown report format {fmt!r}", hint=f"choose among {', '.join(FORMATS)}")
    if not isinstance(doc, chosen.kinds):
        kinds = ", ".join(sorted(jsonio.KINDS[k] for k in chosen.kinds))
        raise UsageError(
            f"format {fmt!r} does not apply to a {kind_of(doc)} report (it needs call stacks: {kinds})",
            hint="use --format html,md,json for scans",
        )
    return chosen


def render_bytes(doc: Document | DiffResult, fmt: str, **opts: str) -> bytes:
    """The document in one format, as the bytes a file of that format holds (text is UTF-8)."""
    chosen = renderer(doc, fmt)
    if chosen.binary:
        raw = io.BytesIO()
        chosen.render(doc, raw, **opts)
        return raw.getvalue()
    buf = io.StringIO()
    chosen.render(doc, buf, **opts)
    return buf.getvalue().encode("utf-8")


def render(doc: Document | DiffResult, fmt: str, stream: IO[str] | IO[bytes], **opts: str) -> None:
    """Write ``doc`` in format ``fmt`` to a text or binary stream (``opts``: the renderer's, e.g.
    ``value`` of folded, ``fail_on`` of a diff).

    Raises UsageError for an unknown format, a format that does not apply to the document's kind
    (folded/pprof of a scan), or binary pprof output asked for on a text stream.
    """
    chosen = renderer(doc, fmt)
    is_text = isinstance(stream, io.TextIOBase)
    if chosen.binary:
        if is_text:
            binary = getattr(stream, "buffer", None)
            if binary is None:
                raise UsageError(
                    f"{fmt} output is binary", hint="write it to a file (-o FILE or --output-dir)"
                )
            stream.flush()
            binary.write(render_bytes(doc, fmt, **opts))
            return
        chosen.render(doc, stream, **opts)
        return
    if is_text:
        chosen.render(doc, stream, **opts)
    else:
        cast(IO[bytes], stream).write(render_bytes(doc, fmt, **opts))


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
        try:  # a name nobody else holds (O_EXCL), then filled like every report
            fd, name = tempfile.mkstemp(dir=folder, prefix=f"{default_stem(doc)}-rescued-", suffix=".json")
            os.close(fd)
        except OSError:
            continue
        try:
            write_atomic(Path(name), data)
        except UsageError:
            with contextlib.suppress(OSError):
                os.unlink(name)
            continue
        return Path(name)
    return None


def write_rendered(output_dir: Path, stem: str, rendered: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Write already rendered reports (``(extension, bytes)``) to ``output_dir/<stem><extension>``
    through the one atomic writer; returns the paths. The folder is made when missing."""
    if "/" in stem or stem in ("", ".", ".."):
        raise UsageError(f"bad report name {stem!r}", hint="a report name is a file name, not a path")
    make_output_dir(output_dir)
    paths: list[Path] = []
    for extension, data in rendered:
        path = output_dir / f"{stem}{extension}"
        write_atomic(path, data, hint="choose another --output-dir")
        paths.append(path)
    return paths


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
        renderer(doc, fmt)
    if redact:
        doc = redact_doc(doc)
    stem = stem or default_stem(doc)
    if "/" in stem or stem in ("", ".", ".."):
        raise UsageError(f"bad report name {stem!r}", hint="a report name is a file name, not a path")
    rendered = [(EXTENSIONS[fmt], render_bytes(doc, fmt)) for fmt in fmts]
    return write_rendered(output_dir, stem, rendered)
