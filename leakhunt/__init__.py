"""leakhunt: find memory leaks in running Linux processes with eBPF and write reports for tickets."""

import logging

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

# The package logger: modules log to logging.getLogger(__name__) under it; `leakhunt -v` shows it.
LOG = logging.getLogger("leakhunt")
LOG.addHandler(logging.NullHandler())
