"""The ``leakhunt`` command line. Each subcommand lives in its own module and is imported lazily,
so ``leakhunt --help`` stays fast and one broken import never hides the other commands.

``main()`` is the one place where errors become messages and exit codes.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

import click

from leakhunt import LOG, __version__
from leakhunt.errors import LeakhuntError, UsageError
from leakhunt.outputfile import discard_stdout, stdout_error

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


# the first sentence of each command's help, for ``leakhunt --help`` without importing every command
# (capstone, the probes, numpy: ~1 s); a unit test keeps them equal to the commands' own
SUMMARIES: dict[str, str] = {
    "scan": "Find the processes whose memory keeps growing.",
    "agent": "Scan continuously and serve the leak suspects as Prometheus metrics.",
    "investigate": "Find the call stacks that leak in the running process PID (or in the kernel).",
    "run": "Start COMMAND under the probe and find the call stacks that leak.",
    "trace": "Trace every allocation and free of PID (or of COMMAND, started here) and list what was "
    "never freed.",
    "import": "Turn captured memleak or bpftrace output into leakhunt's reports.",
    "report": "Re-render a saved report (investigation, scan or trace JSON) in other formats.",
    "diff": "Compare two investigations of one program, BEFORE and AFTER a change: did the fix work?",
    "doctor": "Check that this host can probe, and say how to fix what is missing.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from SUMMARIES, shortened as click shortens a help text."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, click.Command(name, help=SUMMARIES[name]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Say what leakhunt does on stderr (-v: each stage of a run; -vv: every command it starts).",
)
def cli(verbose: int) -> None:
    """Find memory leaks in running Linux processes with eBPF.

    \b
    Typical workflow:
      leakhunt doctor                  check that this host can probe
      leakhunt scan --duration 60      which processes grow?
      leakhunt investigate PID         which call stacks keep growing?
      leakhunt run -- ./myprog ARGS    the same for a command leakhunt starts
    Reports (HTML, Markdown, JSON) are written to ./reports by default.
    """
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("leakhunt: %(name)s: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


# errors of a write to standard output that no retry fixes (files leakhunt writes say their own)
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and ``python -m leakhunt``."""
    try:
        try:
            code = cli.main(args=argv, prog_name="leakhunt", standalone_mode=False)
        finally:
            # what is still buffered is written now, while a failure can still be reported
            sys.stdout.flush()
    except OSError as err:
        if err.errno not in _OUTPUT_ERRNOS or isinstance(err, BrokenPipeError):
            if isinstance(err, BrokenPipeError):
                discard_stdout()
                sys.exit(141)  # what a shell reports for a reader that went away (128 + SIGPIPE)
            raise
        click.echo(f"leakhunt: error: {stdout_error(err)}", err=True)
        sys.exit(UsageError.exit_code)
    except MemoryError:
        discard_stdout()
        click.echo(
            "leakhunt: error: out of memory\n  hint: the input is too large for this host's memory "
            "limit; give a smaller input or raise the limit",
            err=True,
        )
        sys.exit(3)
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
    sys.exit(code if isinstance(code, int) else 0)
