"""Did the fix work? Compare the findings of two investigations, BEFORE and AFTER a change.

Each leaking stack falls in one of three groups:

- ``fixed``: leaked BEFORE, does not leak AFTER (gone, or judged plateau/transient/stable);
- ``new``: leaks AFTER, did not leak BEFORE (absent, or not a leak then);
- ``still``: leaks in both runs.

Stacks that leak in neither run are ``other`` (kept for completeness, not reported as a change).

Matching stacks across builds. A rebuilt program moves code: offsets inside functions change with
any edit, addresses change with every run (ASLR), and the two runs may even use different backends
(bpftrace prints no module names, BCC does). So a stack is matched by its function names only,
innermost first:

- offsets, addresses and module names are ignored;
- compiler clone suffixes are stripped (``foo.constprop.0``, ``foo.isra.0``, ``foo.part.1``,
  ``foo.cold``), since a change of inlining decisions renames them;
- frames with no name (``[unknown]``, raw hex) are skipped, and so are the C runtime's outermost
  frames (``__libc_start_call_main``, ``__libc_start_main``, ``_start``), whose presence depends
  on how deep the unwinder got;
- several findings with the same key (two call sites in one function) are merged: bytes and rates
  add up, the verdict is the most leak-like.

A stack of unknown frames only cannot be matched (a bpftrace run whose target exited before its
symbols were read): it is kept under its addresses and a warning says so.

Exit codes for CI (``exit_code``): with ``fail_on="any"`` (default) 1 when any stack leaks AFTER
(``new`` or ``still``), else 0; with ``"new"`` 1 only for new leaks (a gate that tolerates known
ones); ``"never"`` always 0. Bad input is 2 (``errors.UsageError`` / ``ReportError``), and so is a
run with fewer than 2 snapshots: "no data" must never pass a gate as "fixed".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from leakhunt.errors import UsageError
from leakhunt.model import VERDICT_ORDER, Finding, Frame, Investigation, Verdict

DiffStatus = Literal["new", "still", "fixed", "other"]
FailOn = Literal["any", "new", "never"]
FAIL_ON: tuple[FailOn, ...] = ("any", "new", "never")
STATUS_ORDER: tuple[DiffStatus, ...] = ("new", "still", "fixed", "other")

_CLONE_SUFFIX = re.compile(r"(?:\.(?:constprop|isra|part|cold|lto_priv|llvm|localalias)(?:\.\d+)?)+$")
_STARTUP = frozenset({"__libc_start_call_main", "__libc_start_main", "__libc_start_main_impl", "_start"})
# AFTER shorter than this share of BEFORE may be too short to show the same slow leak.
_SHORT_RUN_RATIO = 0.5


def normalize_symbol(symbol: str) -> str:
    """``foo.constprop.0`` -> ``foo``; other names unchanged (whitespace trimmed)."""
    return _CLONE_SUFFIX.sub("", symbol.strip())


def match_key(frames: Sequence[Frame]) -> tuple[str, ...]:
    """The key two runs' stacks are matched by (see the module docstring), innermost first."""
    names = [normalize_symbol(f.symbol) for f in frames if not f.is_unknown and f.symbol.strip()]
    while names and names[-1] in _STARTUP:
        names.pop()
    if names:
        return tuple(names)
    # Nothing named: only the exact same addresses can match (same process image, same run).
    return tuple(f"[unresolved {f.symbol}]" for f in frames) or ("[no stack]",)


@dataclass(frozen=True)
class Side:
    """A matched stack as one run saw it (several findings merged when they share a key)."""

    verdict: Verdict
    outstanding_bytes: int
    growth_bytes_per_sec: float
    count: int | None
    rank: int  # best (lowest) rank among the merged findings
    frames: tuple[str, ...]  # displayed frames of the best-ranked finding, innermost first
    merged: int = 1  # findings merged into this side


@dataclass(frozen=True)
class DiffEntry:
    key: tuple[str, ...]
    status: DiffStatus
    before: Side | None
    after: Side | None

    @property
    def frames(self) -> tuple[str, ...]:
        """Displayed frames: AFTER's when it has the stack (the build under test), else BEFORE's."""
        side = self.after or self.before
        return side.frames if side else self.key

    @property
    def title(self) -> str:
        """The innermost named function, the stack's short name."""
        return self.key[0] if self.key else "[no stack]"


@dataclass(frozen=True)
class RunSummary:
    """What a reader needs to know about each side's run to trust the comparison."""

    source: str  # file the investigation came from
    comm: str
    pid: int
    backend: str  # "bcc 0.26.0"
    started_at: str
    duration_s: float
    snapshots: int
    stop_reason: str
    findings: int
    leaks: int


@dataclass(frozen=True)
class DiffResult:
    before: RunSummary
    after: RunSummary
    entries: tuple[DiffEntry, ...]  # new, still, fixed, other; within a group by leak rate
    warnings: tuple[str, ...] = ()

    def by_status(self, status: DiffStatus) -> tuple[DiffEntry, ...]:
        return tuple(e for e in self.entries if e.status == status)

    @property
    def new(self) -> tuple[DiffEntry, ...]:
        return self.by_status("new")

    @property
    def still(self) -> tuple[DiffEntry, ...]:
        return self.by_status("still")

    @property
    def fixed(self) -> tuple[DiffEntry, ...]:
        return self.by_status("fixed")

    def exit_code(self, fail_on: FailOn = "any") -> int:
        """0 or 1 for CI, as the module docstring explains."""
        if fail_on == "never":
            return 0
        if fail_on == "new":
            return 1 if self.new else 0
        return 1 if self.new or self.still else 0

    def verdict(self) -> str:
        """The comparison in one sentence."""
        n_new, n_still, n_fixed = len(self.new), len(self.still), len(self.fixed)
        if not (n_new or n_still):
            if n_fixed:
                return f"Fixed: {_n(n_fixed, 'stack')} stopped leaking and nothing leaks after the change."
            return "No stack leaks in either run."
        parts = []
        if n_fixed:
            parts.append(f"{_n(n_fixed, 'stack')} stopped leaking")
        if n_still:
            parts.append(f"{_n(n_still, 'stack')} still {'leaks' if n_still == 1 else 'leak'}")
        if n_new:
            parts.append(f"{_n(n_new, 'new leak')} appeared")
        text = ", ".join(parts)
        return f"Not fixed: {text}."


def _n(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _merge(findings: Sequence[Finding]) -> Side:
    best = min(findings, key=lambda f: f.rank)
    verdict = min((f.verdict for f in findings), key=VERDICT_ORDER.index)
    counts = [f.count for f in findings if f.count is not None]
    return Side(
        verdict=verdict,
        outstanding_bytes=sum(f.outstanding_bytes for f in findings),
        growth_bytes_per_sec=sum(f.growth_bytes_per_sec for f in findings),
        count=sum(counts) if counts else None,
        rank=best.rank,
        frames=tuple(fr.display() for fr in best.stack.frames),
        merged=len(findings),
    )


def _sides(inv: Investigation) -> dict[tuple[str, ...], Side]:
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for f in inv.findings:
        groups.setdefault(match_key(f.stack.frames), []).append(f)
    return {key: _merge(fs) for key, fs in groups.items()}


def _status(before: Side | None, after: Side | None) -> DiffStatus:
    was = before is not None and before.verdict == "leak"
    now = after is not None and after.verdict == "leak"
    if was and now:
        return "still"
    if was:
        return "fixed"
    if now:
        return "new"
    return "other"


def _summary(inv: Investigation, source: str) -> RunSummary:
    return RunSummary(
        source=source,
        comm=inv.target.comm,
        pid=inv.target.pid,
        backend=f"{inv.backend.name} {inv.backend.version}".strip(),
        started_at=inv.run.started_at,
        duration_s=inv.run.duration_s,
        snapshots=len(inv.snapshots),
        stop_reason=inv.run.stop_reason,
        findings=len(inv.findings),
        leaks=sum(1 for f in inv.findings if f.verdict == "leak"),
    )


def _warnings(before: Investigation, after: Investigation, entries: Sequence[DiffEntry]) -> list[str]:
    out: list[str] = []
    if before.target.comm != after.target.comm:
        out.append(
            f"BEFORE traced {before.target.comm!r} and AFTER {after.target.comm!r}: "
            "check that both runs are of the same program."
        )
    if before.run.duration_s > 0 and after.run.duration_s < _SHORT_RUN_RATIO * before.run.duration_s:
        out.append(
            f"AFTER ran {after.run.duration_s:.0f} s, BEFORE {before.run.duration_s:.0f} s: a slow leak may "
            "not show in the shorter run; run AFTER at least as long."
        )
    if len(after.snapshots) < 3:
        out.append(
            f"AFTER has {len(after.snapshots)} snapshot(s): at least 3 are needed to judge growth, so "
            "'fixed' means little here."
        )
    if after.run.stop_reason != "duration" or after.target.exited_early:
        out.append(f"AFTER stopped early ({after.run.stop_reason}): code paths that leak may not have run.")
    for name, inv in (("BEFORE", before), ("AFTER", after)):
        q = inv.quality
        if q.lost_events or q.dropped_stacks or q.map_full:
            out.append(
                f"{name} lost data (lost events {q.lost_events}, dropped stacks {q.dropped_stacks}"
                f"{', map full' if q.map_full else ''}): some stacks may be missing."
            )
    truncated = [s for s in after.snapshots if s.truncated]
    if truncated and any(e.status == "fixed" and e.after is None for e in entries):
        top = truncated[0].top_n
        out.append(
            f"AFTER printed only its top {top if top else 'N'} stacks in {len(truncated)} snapshot(s): "
            "a stack missing from AFTER may be hidden rather than fixed; rerun with a larger top count."
        )
    if before.quality.sample_rate != after.quality.sample_rate:
        out.append(
            f"The runs sampled differently (1/{before.quality.sample_rate} vs "
            f"1/{after.quality.sample_rate}): compare rates, not absolute bytes."
        )
    # Only unresolved stacks that leak matter: they cannot be matched, so one leak would show up as
    # both fixed and new.
    unresolved = sum(
        1 for e in entries if e.status != "other" and e.key and e.key[0].startswith("[unresolved")
    )
    if unresolved:
        out.append(
            f"{_n(unresolved, 'leaking stack')} had no function names and could not be matched across "
            "runs (symbols resolve while the target lives)."
        )
    return out


def _rate(e: DiffEntry) -> float:
    side = e.after if e.status in ("new", "still") else e.before
    return side.growth_bytes_per_sec if side else 0.0


def diff_investigations(
    before: Investigation, after: Investigation, *, before_source: str = "BEFORE", after_source: str = "AFTER"
) -> DiffResult:
    """Compare two investigations of the same program (before and after a change).

    Raises UsageError when either run has fewer than 2 snapshots: growth cannot be judged at all,
    and a CI gate must not turn "no data" into "fixed".
    """
    for name, source, inv in (("BEFORE", before_source, before), ("AFTER", after_source, after)):
        if len(inv.snapshots) < 2:
            raise UsageError(
                f"{name} ({source}) holds {len(inv.snapshots)} snapshot(s): too few to judge any growth",
                hint="rerun it longer (--duration) or with a shorter --interval; 3 snapshots or more",
            )
    b, a = _sides(before), _sides(after)
    keys = list(b) + [k for k in a if k not in b]
    entries = [DiffEntry(k, _status(b.get(k), a.get(k)), b.get(k), a.get(k)) for k in keys]
    entries.sort(key=lambda e: (STATUS_ORDER.index(e.status), -_rate(e), e.key))
    return DiffResult(
        before=_summary(before, before_source),
        after=_summary(after, after_source),
        entries=tuple(entries),
        warnings=tuple(_warnings(before, after, entries)),
    )


def require_investigation(doc: object, source: str) -> Investigation:
    """``doc`` if it is an investigation, else a UsageError naming what it is."""
    if isinstance(doc, Investigation):
        return doc
    kind = type(doc).__name__.replace("Result", "").lower()
    raise UsageError(
        f"{source} is a {kind} report; diff compares two investigations",
        hint="give the JSON reports of `leakhunt investigate` or `leakhunt run` before and after the change",
    )
