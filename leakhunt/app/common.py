"""What every job's result shares: the run header (``model.RunInfo``) filled in one place."""

from __future__ import annotations

import platform
import socket

from leakhunt import __version__
from leakhunt.model import RunInfo


def run_info(
    started_at: str,
    duration_s: float,
    stop_reason: str,
    *,
    host: str | None = None,
    kernel: str | None = None,
) -> RunInfo:
    """The header of a run that started at ``started_at`` and took ``duration_s`` seconds.

    ``host`` and ``kernel`` default to this machine's (a live run); an import passes what its log
    says, or "" (unknown), never the importing machine's.
    """
    return RunInfo(
        started_at=started_at,
        duration_s=round(duration_s, 3),
        stop_reason=stop_reason,
        host=socket.gethostname() if host is None else host,
        kernel=platform.release() if kernel is None else kernel,
        leakhunt_version=__version__,
    )
