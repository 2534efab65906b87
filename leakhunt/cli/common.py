"""Click options and helpers shared by the commands that write reports.

    @click.command()
    @output_options                      # --output-dir, --format, --no-redact
    def investigate(..., output_dir: Path, formats: tuple[str, ...], no_redact: bool) -> None:
        ...
        write_and_announce(doc, output_dir, formats, redact=not no_redact)

``--format`` takes a comma-separated list (``html,md,json``), validated when the command line is
parsed, so a typo fails before any probe starts.
"""

from __future__ import annotations

import math
import os
import re
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import click
from rich.console import Console
from rich.segment import Segment
from rich.text import Text

from leakhunt.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBE_FAILED, EXIT_SAW_NOTHING, UsageError
from leakhunt.model import Investigation
from leakhunt.outputfile import real_dir_note
from leakhunt.report import FORMATS, Document, parse_formats, rescue_report, write_reports
from leakhunt.report.safetext import neutralize

DEFAULT_OUTPUT_DIR = Path("reports")
DEFAULT_FORMATS = "html,md,json"

F = TypeVar("F", bound=Callable[..., object])


def _formats_callback(
    allowed: Sequence[str],
) -> Callable[[click.Context, click.Parameter, object], tuple[str, ...]]:
    """A click callback turning ``"html,md"`` into ("html", "md"), failing on names not in ``allowed``."""

    def convert(ctx: click.Context, param: click.Parameter, value: object) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        try:
            formats = parse_formats(str(value))
        except UsageError as err:
            raise click.BadParameter(f"{err.message} ({err.hint})", ctx, param) from None
        bad = [f for f in formats if f not in allowed]
        if bad:
            raise click.BadParameter(
                f"format {bad[0]!r} is not available here; choose among {', '.join(allowed)}", ctx, param
            )
        return formats

    return convert


@overload
def output_options(func: F) -> F: ...
@overload
def output_options(
    func: None = None, *, allowed: Sequence[str] = FORMATS, default: str = DEFAULT_FORMATS
) -> Callable[[F], F]: ...


def output_options(
    func: F | None = None, *, allowed: Sequence[str] = FORMATS, default: str = DEFAULT_FORMATS
) -> F | Callable[[F], F]:
    """Add ``--output-dir``, ``--format`` and ``--no-redact`` to a click command.

    The command receives ``output_dir: Path``, ``formats: tuple[str, ...]`` and ``no_redact: bool``.
    Use bare (``@output_options``) or with arguments (``@output_options(allowed=("html", "md", "json"))``).
    """

    def decorate(f: F) -> F:
        f = click.option(
            "--no-redact",
            is_flag=True,
            help="Keep secrets found in command lines (password=, token=, --key VALUE, URL credentials) "
            "in the reports. By default they are replaced by ***.",
        )(f)
        f = click.option(
            "--format",
            "formats",
            metavar="FORMATS",
            callback=_formats_callback(tuple(allowed)),
            default=default,
            show_default=True,
            help=f"Report formats to write, comma-separated: {', '.join(allowed)}.",
        )(f)
        f = click.option(
            "--output-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_OUTPUT_DIR,
            show_default=True,
            help="Directory for the reports (created if missing). Files are named "
            "leakhunt-<kind>-<comm>-<pid>-<time>.<ext> and readable by their owner only.",
        )(f)
        return f

    if func is not None:
        return decorate(func)
    return decorate


def write_and_announce(
    doc: Document,
    output_dir: Path,
    formats: Sequence[str],
    *,
    redact: bool = True,
    stem: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the reports and print one ``report: PATH`` line per file (to stderr by default)."""
    paths = write_reports(doc, output_dir, formats, stem=stem, redact=redact)
    announce(paths, output_dir, echo or (lambda line: click.echo(line, err=True)))
    return paths


def announce(paths: Sequence[Path], output_dir: Path, say: Callable[[str], object]) -> None:
    """One ``report: PATH`` line per file; when ``output_dir`` is a symlink, say where they really are."""
    note = real_dir_note(output_dir)
    if note is not None:
        say(f"note: {note}")
    for path in paths:
        say(f"report: {os.path.realpath(path) if note is not None else path}")


def write_despite_interrupt(
    doc: Document,
    output_dir: Path,
    formats: Sequence[str],
    *,
    redact: bool,
    echo: Callable[[str], None],
) -> list[Path]:
    """``write_and_announce`` with Ctrl-C ignored meanwhile.

    A live run writes its reports even when it was interrupted: a second Ctrl-C while they are
    written must not lose them. When they cannot be written (the disk filled up during the run),
    the whole result is saved as JSON in the temporary folder and the error says where.
    """
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return write_and_announce(doc, output_dir, formats, redact=redact, echo=echo)
    except UsageError as err:
        rescued = rescue_report(doc, redact=redact)
        if rescued is None:
            raise
        raise UsageError(
            f"{err.message}; the probe's data is saved in {rescued}",
            hint=f"write the reports from it: leakhunt report {rescued} --format "
            f"{','.join(formats)} --output-dir DIR",
        ) from None
    finally:
        signal.signal(signal.SIGINT, old)


# The longest time any option takes: a year. Longer is a typo (or 1e308), and would overflow the
# clocks and deadlines computed from it.
MAX_SECONDS = 365 * 24 * 3600.0


# --- one grammar for sizes and one for durations, for every option ------------------------------

_SIZE = re.compile(r"(?P<n>\d{1,18}(?:\.\d{1,9})?)\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_SIZE = 1 << 62  # far above any memory; keeps every size a plain int64 in probe programs
_DURATION = re.compile(r"(?P<n>\d{1,12}(?:\.\d{1,9})?|\.\d{1,9})\s*(?P<unit>ms|s|m|min|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: object, option: str = "size") -> int:
    """Bytes from ``4096``, ``4k``, ``1.5k``, ``16KiB``, ``2M``, ``1.5GiB``, ``1T`` (binary units,
    case-insensitive, ``B``/``iB`` optional); UsageError naming ``option`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE:
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if match is None:
        raise UsageError(
            f"{option}: {value!r} is not a size", hint="write e.g. 4096, 4k, 1.5k, 16KiB, 2M or 1G"
        )
    size = int(float(match.group("n")) * _SIZE_UNITS[match.group("unit").lower()])
    if size > MAX_SIZE:
        raise UsageError(f"{option}: {value!r} is larger than any memory")
    return size


def parse_duration(value: object, option: str = "duration", *, unit: str = "s") -> float:
    """Seconds from ``30``, ``1.5``, ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``; a bare number is in
    ``unit`` (``"s"``, or ``"ms"`` for the options named in milliseconds). UsageError otherwise."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        seconds = float(value) * _DURATION_UNITS[unit]
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise UsageError(
                f"{option}: {value!r} is not a duration", hint="write e.g. 30, 1.5, 500ms, 30s, 5m or 2h"
            )
        seconds = float(match.group("n")) * _DURATION_UNITS[(match.group("unit") or unit).lower()]
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise UsageError(f"{option}: {value!r} is more than a year ({MAX_SECONDS:.0f} s)")
    return seconds


class Size(click.ParamType[int, object]):
    """A size option (``parse_size``'s grammar), at least ``min`` bytes."""

    name = "size"

    def __init__(self, min: int = 0) -> None:
        self.min = min

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            size = parse_size(value, param.opts[0] if param is not None and param.opts else "size")
        except UsageError as err:
            self.fail(f"{err.message} ({err.hint})" if err.hint else err.message, param, ctx)
        if size < self.min:
            self.fail(f"{value!r} is less than the minimum of {self.min} bytes", param, ctx)
        return size

    def __repr__(self) -> str:
        return f"Size(min={self.min})"


def _duration_param(
    value: object, param: click.Parameter | None, ctx: click.Context | None, *, unit: str, name: str
) -> float:
    """Seconds from a duration option's value (``parse_duration``), or a click error naming it."""
    try:
        return parse_duration(value, "duration", unit=unit)
    except UsageError as err:
        raise click.BadParameter(
            f"{value!r} is not a {name} value ({err.hint or err.message})", ctx, param
        ) from None


class Seconds(click.ParamType[float, object]):
    """A duration option (``parse_duration``'s grammar) in [min, MAX_SECONDS] seconds: finite
    (``inf`` and ``nan`` are refused)."""

    name = "seconds"

    def __init__(self, min: float = 0.0) -> None:
        self.min = min

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        seconds = _duration_param(value, param, ctx, unit="s", name=self.name)
        if seconds < self.min:
            self.fail(f"{value!r} is less than the minimum of {self.min:g} s", param, ctx)
        return seconds

    def __repr__(self) -> str:
        return f"Seconds(min={self.min:g})"


class Milliseconds(click.ParamType[int, object]):
    """A duration option whose bare numbers are milliseconds (``--older-than 500`` = ``500ms`` =
    ``0.5s``), as a whole number of milliseconds."""

    name = "milliseconds"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return round(_duration_param(value, param, ctx, unit="ms", name=self.name) * 1000)


class SafeConsole(Console):
    """A rich Console that never lets a control character from the data reach the terminal.

    Process names, command lines and symbols are the target's to choose: an escape sequence among
    them would retitle or clear the terminal. Strings are neutralized before rich lays them out
    (so widths stay right), and every segment again when written (``Text`` objects built by hand,
    progress columns); rich's own styling and cursor control are kept.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(neutralize(text), **kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            seg if seg.control else Segment(neutralize(seg.text), seg.style, seg.control) for seg in buffer
        )


def exit_status(doc: Document) -> int:
    """The exit status of a command that produced ``doc`` (``leakhunt.cli.main`` exits with it).

    Interrupted: 130. A launched command (``run``): its own status (128+N when killed by signal N),
    or 4 when it succeeded but the probes saw nothing; one that leakhunt stopped at the end of
    --duration counts as succeeded (its signal is in the report, not in the status). Otherwise 3
    when the probe died mid-run, 4 when no snapshot or only one was taken, the probes saw nothing,
    or no leak was found but a stack grew without a verdict or far less than the process's growth
    was seen (the result proves nothing), else 0.
    """
    if doc.run.stop_reason == "interrupted":
        return EXIT_INTERRUPTED
    if not isinstance(doc, Investigation):
        # a trace whose tracer died under it, as an investigation whose probe did
        return EXIT_PROBE_FAILED if doc.run.stop_reason == "error" else EXIT_OK
    # no snapshot (the run ended before the first interval) or one (no growth can show), the probes
    # saw nothing, or, with no leak found, far less than the process grew (an allocator not hooked)
    # or a stack that grew in two snapshots only (too few to judge): the result proves nothing. (A
    # full map says so first in every report; the stacks it could track were judged.)
    no_leak = not any(f.verdict == "leak" for f in doc.findings)
    too_few = any(f.too_few_snapshots for f in doc.findings)
    blind = (
        len(doc.snapshots) < 2  # none, or one: growth cannot show
        or doc.blind_reason() is not None
        or (no_leak and (bool(doc.quality.missed_allocations) or too_few))
    )
    code = doc.target.exit_code
    if doc.run.stop_reason == "duration" and code is not None and code < 0:
        # still running at the end of --duration, so leakhunt stopped it: not the command's failure
        code = 0
    if doc.target.launched and doc.run.stop_reason != "imported":
        if blind and not code:
            return EXIT_SAW_NOTHING
        return EXIT_OK if code is None else (128 - code if code < 0 else code)
    if doc.run.stop_reason == "error":
        return EXIT_PROBE_FAILED  # the probe died under us: the report holds what it printed before
    return EXIT_SAW_NOTHING if blind else EXIT_OK
