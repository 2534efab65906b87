"""The ``leakhunt`` command line. Each subcommand lives in its own module and is imported lazily,
so ``leakhunt --help`` stays fast and one broken import never hides the other commands.

``main()`` is the one place where errors become messages and exit codes.
"""

from __future__ import annotations

import importlib
import sys

import click

from leakhunt import __version__
from leakhunt.errors import LeakhuntError

# name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "scan": "leakhunt.cli.scan:scan",
    "agent": "leakhunt.cli.agent:agent",
    "investigate": "leakhunt.cli.investigate:investigate",
    "run": "leakhunt.cli.investigate:run",
    "trace": "leakhunt.cli.trace:trace",
    "import": "leakhunt.cli.importcmd:import_",
    "report": "leakhunt.cli.report:report",
    "diff": "leakhunt.cli.report:diff",
    "doctor": "leakhunt.cli.doctor:doctor",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="leakhunt")
def cli() -> None:
    """Find memory leaks in running Linux processes with eBPF.

    \b
    Typical workflow:
      leakhunt doctor                  check that this host can probe
      leakhunt scan --duration 60      which processes grow?
      leakhunt investigate PID         which call stacks keep growing?
      leakhunt run -- ./myprog ARGS    the same for a command leakhunt starts
    Reports (HTML, Markdown, JSON) are written to ./reports by default.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and ``python -m leakhunt``."""
    try:
        code = cli.main(args=argv, prog_name="leakhunt", standalone_mode=False)
    except LeakhuntError as err:
        click.echo(f"leakhunt: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("leakhunt: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("leakhunt: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
