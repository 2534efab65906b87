"""--backend auto never picks a backend that slows every process on the host (issue: a bpftrace
older than 0.20 fires its library uprobes in every process, not only the target)."""

from __future__ import annotations

import pytest

from leakhunt.errors import ToolMissing, UsageError
from leakhunt.probe import choose as session
from leakhunt.probe import native, tools
from tests.conftest import cannot_probe_reason

OLD_BPFTRACE = tools.Tool("/usr/bin/bpftrace", "0.17.0")
NEW_BPFTRACE = tools.Tool("/usr/bin/bpftrace", "0.23.2")


@pytest.mark.parametrize(
    ("version", "host_wide"),
    [("0.17.0", True), ("0.19.1", True), ("0.20.0", False), ("0.23.2", False), ("unknown", True)],
)
def test_which_bpftrace_probes_every_process(version: str, host_wide: bool) -> None:
    assert session.host_wide_bpftrace(tools.Tool("/usr/bin/bpftrace", version)) is host_wide


def test_auto_on_this_host_picks_a_pid_filtered_backend_and_says_why() -> None:
    """Real discovery on this machine (setup.sh installs bpftrace 0.17, BCC and headers)."""
    reason = cannot_probe_reason()
    if reason is not None:
        pytest.skip(reason)
    choice = session.choose_backend("auto")
    assert choice.name in ("native", "bcc")
    assert choice.warning is None
    assert "target only" in choice.reason
    if native.unusable_reason() is None and native.find_host() is not None:
        assert choice.name == "native"
        assert "emulate" in choice.reason


class _Host:
    """Which tools a host has: replaces the discovery functions (the choice logic runs for real)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, native_ok: bool, memleak: bool,
                 bpftrace: tools.Tool | None) -> None:  # fmt: skip
        monkeypatch.setattr(native, "unusable_reason", lambda: None if native_ok else "no kernel headers")
        monkeypatch.setattr(native, "find_host", lambda: tools.Tool("/usr/bin/python3", "0.26.0"))
        memleak_tool = tools.Tool("/usr/sbin/memleak-bpfcc", "0.26.0", "bcc") if memleak else None
        monkeypatch.setattr(tools, "find_memleak", lambda: memleak_tool)
        monkeypatch.setattr(
            tools, "kernel_headers_dir", lambda: "/lib/modules/x/build" if native_ok else None
        )
        monkeypatch.setattr(tools, "find_bpftrace", lambda: bpftrace)


def test_auto_prefers_native(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=True, memleak=True, bpftrace=OLD_BPFTRACE)
    choice = session.choose_backend("auto")
    assert choice.name == "native" and choice.warning is None
    assert "target only" in choice.reason


def test_auto_falls_back_to_bcc_then_refuses_a_host_wide_bpftrace(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=False, memleak=True, bpftrace=OLD_BPFTRACE)
    monkeypatch.setattr(tools, "kernel_headers_dir", lambda: "/lib/modules/x/build")
    monkeypatch.setattr(native, "unusable_reason", lambda: "no python3-bpfcc")
    choice = session.choose_backend("auto")
    assert choice.name == "bcc"
    assert "no python3-bpfcc" in choice.reason


def test_only_an_old_bpftrace_needs_an_explicit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=False, memleak=False, bpftrace=OLD_BPFTRACE)
    with pytest.raises(UsageError) as err:
        session.choose_backend("auto")
    assert "EVERY process" in err.value.message
    assert "--backend bpftrace" in (err.value.hint or "")
    explicit = session.choose_backend("bpftrace")
    assert explicit.name == "bpftrace"
    assert explicit.warning is not None and "EVERY process" in explicit.warning


def test_a_pid_filtering_bpftrace_is_fine_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=False, memleak=False, bpftrace=NEW_BPFTRACE)
    choice = session.choose_backend("auto")
    assert choice.name == "bpftrace" and choice.warning is None
    assert session.choose_backend("bpftrace").warning is None


def test_trace_mode_never_gets_native(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=True, memleak=True, bpftrace=OLD_BPFTRACE)
    assert session.choose_backend("auto", allow_native=False).name == "bcc"
    with pytest.raises(UsageError):
        session.choose_backend("native", allow_native=False)


def test_nothing_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    _Host(monkeypatch, native_ok=False, memleak=False, bpftrace=None)
    with pytest.raises(ToolMissing):
        session.choose_backend("auto")
    with pytest.raises(ToolMissing):
        session.choose_backend("native")
