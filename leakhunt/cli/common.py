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
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import click
from rich.console import Console
from rich.segment import Segment
from rich.text import Text

from leakhunt.errors import UsageError
from leakhunt.report import FORMATS, Document, parse_formats, write_reports
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
    say = echo or (lambda line: click.echo(line, err=True))
    for path in paths:
        say(f"report: {path}")
    return paths


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
    written must not lose them.
    """
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return write_and_announce(doc, output_dir, formats, redact=redact, echo=echo)
    finally:
        signal.signal(signal.SIGINT, old)


# The longest time any option takes: a year. Longer is a typo (or 1e308), and would overflow the
# clocks and deadlines computed from it.
MAX_SECONDS = 365 * 24 * 3600.0


class Seconds(click.ParamType[float, object]):
    """A number of seconds in [min, MAX_SECONDS]: finite (``inf`` and ``nan`` are refused)."""

    name = "seconds"

    def __init__(self, min: float = 0.0) -> None:
        self.min = min

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value) and self.min <= value <= MAX_SECONDS:
            return value
        try:
            seconds = float(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        if seconds < self.min:
            self.fail(f"{value!r} is less than the minimum of {self.min:g} s", param, ctx)
        if seconds > MAX_SECONDS:
            self.fail(f"{value!r} is more than a year ({MAX_SECONDS:.0f} s)", param, ctx)
        return seconds

    def __repr__(self) -> str:
        return f"Seconds(min={self.min:g})"


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


def human_size(n: float) -> str:
    """A byte count for the terminal: ``512 B``, ``1.5 KiB``, ``2.0 MiB`` (at most GiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
