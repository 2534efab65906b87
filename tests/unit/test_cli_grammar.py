"""One size grammar and one duration grammar for every option (issue 17 item 7: `investigate
--min-size 1.5k` and `import --min-growth 4k` were refused while `scan --min-rss 1.5k` was accepted).

The command lines are parsed by click exactly as `leakhunt` parses them; nothing is run.
"""

from __future__ import annotations

import click
import pytest

from leakhunt.cli import COMMANDS, SUMMARIES, LazyGroup, cli
from leakhunt.cli.common import parse_duration, parse_size
from leakhunt.errors import UsageError

SIZE_OPTIONS = [
    ("investigate", "--min-size", ["1"]),
    ("investigate", "--max-size", ["1"]),
    ("investigate", "--min-growth", ["1"]),
    ("run", "--min-size", ["--", "true"]),
    ("scan", "--min-rss", []),
    ("scan", "--min-growth", []),
    ("scan", "--min-rate", []),
    ("import", "--min-growth", ["x.log"]),
    ("agent", "--min-growth", ["--listen", ":9"]),
    ("agent", "--escalate-rate", ["--listen", ":9"]),
]
DURATION_OPTIONS = [
    ("investigate", "--duration", ["1"]),
    ("investigate", "--interval", ["1"]),
    ("trace", "--duration", ["1"]),
    ("scan", "--duration", []),
    ("scan", "--interval", []),
    ("agent", "--interval", ["--listen", ":9"]),
]
MS_OPTIONS = [
    ("investigate", "--older-than", ["1"]),
    ("trace", "--older-than", ["1"]),
    ("import", "--older-than", ["x.log"]),
]


def _parse(command: str, args: list[str]) -> dict[str, object]:
    """The parameters ``leakhunt COMMAND ARGS`` would be called with."""
    group = cli
    assert isinstance(group, LazyGroup)
    cmd = group.get_command(click.Context(group), command)
    assert cmd is not None, COMMANDS
    ctx = cmd.make_context(command, list(args))
    return ctx.params


def _param_name(command: str, option: str) -> str:
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    return next(p.name for p in cmd.params if option in p.opts and p.name)


@pytest.mark.parametrize(("command", "option", "rest"), SIZE_OPTIONS)
@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("4k", 4096), ("1.5k", 1536), ("16KiB", 16384), ("2M", 2 << 20), ("1g", 1 << 30)],
)
def test_every_size_option_takes_the_same_sizes(
    command: str, option: str, rest: list[str], text: str, size: int
) -> None:
    params = _parse(command, [option, text, *rest])
    assert params[_param_name(command, option)] == size


@pytest.mark.parametrize(("command", "option", "rest"), SIZE_OPTIONS)
@pytest.mark.parametrize("text", ["", "k", "-1", "1.5.5k", "4 kb b", "1e9", "12 parsecs"])
def test_every_size_option_refuses_the_same_garbage(
    command: str, option: str, rest: list[str], text: str
) -> None:
    with pytest.raises(click.BadParameter, match="is not a size"):
        _parse(command, [option, text, *rest])


@pytest.mark.parametrize(("command", "option", "rest"), DURATION_OPTIONS)
@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("1.5", 1.5), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0)]
)
def test_every_duration_option_takes_the_same_durations(
    command: str, option: str, rest: list[str], text: str, seconds: float
) -> None:
    params = _parse(command, [option, text, *rest])
    assert params[_param_name(command, option)] == pytest.approx(seconds)


@pytest.mark.parametrize(("command", "option", "rest"), MS_OPTIONS)
@pytest.mark.parametrize(("text", "ms"), [("500", 500), ("500ms", 500), ("2s", 2000), ("1.5s", 1500)])
def test_millisecond_options_take_the_duration_grammar(
    command: str, option: str, rest: list[str], text: str, ms: int
) -> None:
    params = _parse(command, [option, text, *rest])
    assert params[_param_name(command, option)] == ms


@pytest.mark.parametrize("text", ["", "s", "-1", "inf", "nan", "1e400", "99999999999h", "3 fortnights"])
def test_durations_refuse_garbage(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_sizes_beyond_any_memory_are_refused() -> None:
    assert parse_size("1T") == 1 << 40
    with pytest.raises(UsageError):
        parse_size("99999999999999999T")


def test_the_command_list_of_help_says_what_each_command_says_of_itself() -> None:
    """``leakhunt --help`` lists the commands from SUMMARIES without importing them: the same
    lines click makes from each command's own help, at any terminal width."""
    assert set(SUMMARIES) == set(COMMANDS)
    for width in (60, 80, 120):
        listed = cli.get_help(click.Context(cli, terminal_width=width, max_content_width=width))
        for name in COMMANDS:
            cmd = cli.get_command(click.Context(cli), name)
            assert cmd is not None
            limit = width - 6 - max(len(n) for n in COMMANDS)
            short = cmd.get_short_help_str(limit)
            assert f"  {name.ljust(max(len(n) for n in COMMANDS))}  {short}" in listed, (name, width, listed)
