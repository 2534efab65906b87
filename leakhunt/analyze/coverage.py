"""Did the probes see the allocations that made the process grow?

A probe on the wrong allocator (jemalloc linked, glibc probed), a backend that cannot hook part of
it (memleak and tcmalloc's operator new) or memory that never goes through malloc (mmap, a custom
pool) all give the same picture: the process's anonymous memory grows while the stacks the probes
saw do not. Reporting "no stack kept growing" then would be a false all-clear.

    missed = missed_allocations(inv.memory, inv.snapshots, probed=alloc, really=detected)
    # "the process's anonymous memory grew by 12.0 MiB while the probes saw 0 B of new outstanding
    #  allocations: likely cause: allocator jemalloc (libjemalloc.so.2) not hooked (--obj named libc.so.6)"
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from leakhunt.model import AllocatorInfo, MemSample, Snapshot
from leakhunt.units import human_size

# Growth below this is never judged: page-cache-like noise, thread stacks, first-touch of arenas.
MIN_UNEXPLAINED_BYTES = 2 * 1024 * 1024
# The probes must have seen at least this share of the growth for the result to count as complete.
MIN_SEEN_SHARE = 0.2


def missed_allocations(
    memory: Sequence[MemSample],
    snapshots: Sequence[Snapshot],
    *,
    probed: AllocatorInfo | None = None,
    really: AllocatorInfo | None = None,
    sample_rate: int = 1,
    size_filtered: bool = False,
    backend_gaps: Sequence[str] = (),
    unparsed_lines: int = 0,
) -> str:
    """One sentence when the process grew far more than the probes saw, else "".

    ``memory``: the target's samples over the run; ``snapshots``: what the probes saw (outstanding
    bytes per stack; everything tracked was allocated after they attached, so the last snapshot's
    total is the growth they saw). ``probed`` is the allocator the probes hooked, ``really`` the one
    the process uses when that differs (``--obj``); ``backend_gaps`` are the backend's own notes on
    what it cannot hook. Sampled runs are scaled by ``sample_rate``.
    """
    if len(memory) < 2 or not snapshots:
        return ""
    ordered = sorted(memory, key=lambda m: m.t)
    grew = ordered[-1].anon - ordered[0].anon
    if grew < MIN_UNEXPLAINED_BYTES:
        return ""
    # the most the probes ever held: a last snapshot cut short or unreadable must not read as "saw 0"
    seen = max(sum(max(s.outstanding_bytes, 0) for s in snap.stacks) for snap in snapshots)
    seen *= max(sample_rate, 1)
    # the first MIN_UNEXPLAINED_BYTES are the allocator's own start-up and reserve (tcmalloc and
    # jemalloc take memory from the system in MiB-sized steps ahead of use): judged on the rest
    if seen >= MIN_SEEN_SHARE * (grew - MIN_UNEXPLAINED_BYTES):
        return ""
    return (
        f"the process's anonymous memory grew by {human_size(grew)} while the probes saw "
        f"{human_size(seen)} of new outstanding allocations: likely cause: "
        f"{_cause(probed, really, size_filtered, backend_gaps, unparsed_lines)}"
    )


def _cause(
    probed: AllocatorInfo | None,
    really: AllocatorInfo | None,
    size_filtered: bool,
    backend_gaps: Sequence[str],
    unparsed_lines: int,
) -> str:
    if really is not None and (probed is None or really.path != probed.path):
        where = f" ({probed.how} named {os.path.basename(probed.path)})" if probed is not None else ""
        return f"allocator {really.name} ({os.path.basename(really.path)}) not hooked{where}"
    if backend_gaps:
        return backend_gaps[0]
    if unparsed_lines:
        return f"the probe's output could not all be read ({unparsed_lines:,} unparsed lines)"
    if size_filtered:
        return "--min-size/--max-size left the growing allocations out"
    if probed is None:
        return "the process allocates outside the functions probed"
    return (
        f"memory that does not come from {probed.name}'s malloc family (mmap, a custom allocator or "
        "pool), or memory allocated before the probes attached and touched only now"
    )
