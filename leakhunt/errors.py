"""One error hierarchy. ``leakhunt.cli.main`` turns each into a message and its exit code.

Exit codes: 0 ok, 1 a finding the caller asked to fail on (``diff`` regressions), 2 bad input or an
environment that cannot probe (not root, missing tools, no such pid), 3 a probe or tool failure,
4 the probes saw nothing (no allocation: the report is written, but it proves nothing),
130 interrupted before anything could be saved.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDING = 1  # a finding the caller asked to fail on (diff --fail-on)
EXIT_USAGE = 2
EXIT_PROBE_FAILED = 3
# A run that saw no allocation must not exit like "checked, no leak" (0).
EXIT_SAW_NOTHING = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class LeakhuntError(Exception):
    """Base class. ``hint`` says what the user can do about it."""

    exit_code = 3

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(LeakhuntError):
    """Bad input from the user: options, files, patterns."""

    exit_code = EXIT_USAGE


class PermissionProblem(LeakhuntError):
    """Not root / missing capabilities."""

    exit_code = 2


class TargetError(LeakhuntError):
    """The target pid does not exist, is a kernel thread, or cannot be launched."""

    exit_code = 2


class ToolMissing(LeakhuntError):
    """bpftrace / memleak / kernel headers are not installed or not usable."""

    exit_code = 2


class ProbeFailed(LeakhuntError):
    """A probe tool started but failed; ``stderr`` holds the tool's own words."""

    exit_code = 3

    def __init__(self, message: str, hint: str = "", stderr: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr

    def __str__(self) -> str:
        text = super().__str__()
        said = without_traceback(self.stderr)
        if said.strip():
            tail = "\n".join(said.strip().splitlines()[-15:])
            text += "\n  tool said:\n" + "\n".join("    " + line for line in tail.splitlines())
        return text


def without_traceback(stderr: str) -> str:
    """A tool's stderr with each Python traceback (BCC's tools are Python) cut down to the error
    it ends with: the frames of someone else's code tell the user nothing they can act on."""
    out: list[str] = []
    in_traceback = False
    for line in stderr.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback:
            if line.startswith((" ", "\t")) or not line.strip():
                continue  # a frame, its source line, or the ^^^ marker
            in_traceback = False
        out.append(line)
    return "\n".join(out)


class ReportError(LeakhuntError):
    """A saved report or captured log cannot be read."""

    exit_code = 2
