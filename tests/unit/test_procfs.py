"""leakhunt.procfs: the raw reads raise Gone/Denied on real processes; the parsers read captured
/proc files and never raise on anything else."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt import procfs
from leakhunt.probe import allocator
from leakhunt.symbols.maps import parse_maps as symbol_maps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proc"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- parsers over captured files -------------------------------------------------------------------


def test_maps_of_sleep() -> None:
    entries = procfs.parse_maps(fixture("maps-sleep.txt"))
    assert len(entries) == 24  # every line of the capture
    first = entries[0]
    assert (first.start, first.end, first.perms, first.offset, first.inode, first.path) == (
        0x55764EEDC000,
        0x55764EEDE000,
        "r--p",
        0,
        260875,
        "/usr/bin/sleep",
    )
    anonymous = entries[6]
    assert anonymous.path == "" and anonymous.inode == 0 and not anonymous.is_file
    code = [e.path for e in entries if "x" in e.perms and e.is_file]
    assert code == [
        "/usr/bin/sleep",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ]
    assert entries[-1].path == "[vsyscall]" and entries[-1].start == 0xFFFFFFFFFF600000


def test_maps_deleted_path_is_marked() -> None:
    line = "7f0000000000-7f0000001000 r-xp 00001000 fe:01 42    /opt/lib/libx.so (deleted)"
    entry = procfs.parse_maps_line(line)
    assert entry is not None and entry.path == "/opt/lib/libx.so" and entry.deleted
    # both views of the maps are built on this one parser
    assert symbol_maps([line])[0].path == "/opt/lib/libx.so"
    assert allocator.parse_maps([line])[0].deleted


def test_maps_lines_that_are_not_maps_lines() -> None:
    for line in (
        "",
        "garbage",
        "7f00-7f10 r-xp 0 fe:01",  # four fields
        "zz00-7f10 r-xp 00000000 fe:01 1 /x",  # not hex
        "7f00-7f10 rwxq 00000000 fe:01 1 /x",  # not a permission
        "7f00 r-xp 00000000 fe:01 1 /x",  # no range
        "7f00-7f10 r-xp 00000000 fe:01 x1 /x",  # no inode
    ):
        assert procfs.parse_maps_line(line) is None, line


def test_status_fields() -> None:
    status = fixture("status-process_api.txt").encode()
    assert procfs.status_int(status, "Tgid") == 1
    assert procfs.status_int(status, "VmSwap") == 0
    assert procfs.status_int(status, "CapEff", base=16) == 0x1FFFFFFFFFF
    assert procfs.status_field(status, "Name") is not None
    assert procfs.status_field(status, "NoSuchField") is None
    assert procfs.status_int("Tgid:\tx\n", "Tgid") is None
    assert procfs.status_int("Tgid:\n", "Tgid") is None


def test_syscall_number() -> None:
    # sleep(1) blocked in clock_nanosleep (230 on x86_64)
    assert procfs.parse_syscall_number(fixture("syscall-sleep.txt")) == 230
    assert procfs.parse_syscall_number("-1 0x7ffc 0x7f00\n") == -1  # in user space
    assert procfs.parse_syscall_number("running\n") is None
    assert procfs.parse_syscall_number("") is None


def test_environ_and_cmdline() -> None:
    blob = (FIXTURES / "environ-sleep.bin").read_bytes()
    assert procfs.environ_value(blob, "HOME") == "/nonexistent"
    assert procfs.environ_value(blob, "LD_PRELOAD") == ""
    assert procfs.environ_value(blob, "USER") is None
    assert procfs.parse_cmdline(b"sleep\x0020\x00") == ("sleep", "20")
    assert procfs.parse_cmdline(b"") == ()


def test_stat_fields() -> None:
    stat = fixture("stat-process_api.txt").encode()
    flags = procfs.parse_stat_flags(stat)
    assert flags is not None and not flags & procfs.PF_KTHREAD
    assert procfs.parse_stat_starttime(stat) is not None
    # a command name with spaces and parentheses
    odd = b"42 (a) b) (c) S 1 42 42 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0"
    assert procfs.parse_stat_flags(odd) == 2097216
    assert procfs.parse_stat_starttime(odd) == 77
    assert procfs.parse_stat_flags(b"no parenthesis") is None


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)
_MAPSY = st.lists(
    st.sampled_from(
        [
            "7f00-7f10",
            "r-xp",
            "00000000",
            "fe:01",
            "123",
            "/lib/x.so",
            " (deleted)",
            "-",
            " ",
            "\n",
            "²",
            "0x1",
        ]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_TEXT, _MAPSY), blob=st.binary(max_size=400))
def test_parsers_never_raise(text: str, blob: bytes) -> None:
    procfs.parse_maps(text)
    procfs.parse_maps(text.splitlines())
    procfs.parse_maps_line(text)
    procfs.status_field(text, "Tgid")
    procfs.status_int(blob, "CapEff", base=16)
    procfs.status_int(text, "VmSwap")
    procfs.environ_value(blob, "LD_PRELOAD")
    procfs.parse_cmdline(blob)
    procfs.parse_syscall_number(text)
    procfs.parse_stat_flags(blob)
    procfs.parse_stat_starttime(blob)
    procfs.parse_status_identity(blob)
    procfs.parse_status_memory(blob)
    procfs.parse_statm(blob)
    procfs.parse_swap_total(blob)
    procfs.parse_meminfo_slab(text)
    procfs.parse_slabinfo(text)
    symbol_maps(text)
    allocator.parse_maps(text)


# --- raw reads on real processes --------------------------------------------------------------------


def _zombie() -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    child.kill()
    while time.monotonic() < deadline:
        if procfs.status_field(procfs.read_bytes(child.pid, "status"), "State") == "Z (zombie)":
            return child
        time.sleep(0.01)
    raise AssertionError("the killed child never became a zombie")


def test_a_process_that_exited_is_gone() -> None:
    child = subprocess.Popen(["sleep", "30"])
    time.sleep(0.05)
    held = procfs.open_dir(child.pid)
    try:
        assert b"Tgid:" in procfs.read_at(held, "status")
        child.kill()
        child.wait()
        for read in (
            lambda: procfs.read_bytes(child.pid, "status"),
            lambda: procfs.read_text(child.pid, "maps"),
            lambda: procfs.readlink(child.pid, "exe"),
            lambda: procfs.listdir(child.pid, "fd"),
            lambda: procfs.stat(child.pid, "root/"),
            lambda: procfs.open_dir(child.pid),
            lambda: procfs.read_at(held, "status"),  # the descriptor held past the exit
        ):
            with pytest.raises(procfs.Gone) as caught:
                read()
            assert isinstance(caught.value, OSError) and caught.value.errno is not None
        assert not procfs.exists(child.pid)
    finally:
        os.close(held)


def test_a_zombie_has_an_empty_map_and_no_links() -> None:
    child = _zombie()
    try:
        assert procfs.exists(child.pid)
        assert procfs.read_text(child.pid, "maps") == ""
        with pytest.raises(procfs.Gone):
            procfs.readlink(child.pid, "exe")
    finally:
        child.wait()


def test_a_refused_read_is_denied() -> None:
    """pid 1's environ is readable by root and its own user only: a reader that is neither gets
    Denied (the test forks a child that drops to nobody when it runs as root)."""
    if os.geteuid() != 0:
        with pytest.raises(procfs.Denied):
            procfs.read_bytes(1, "environ")
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try, report, leave
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                procfs.read_bytes(1, "environ")
                outcome = b"read"
            except procfs.Denied as err:
                outcome = b"denied " + str(err.errno).encode()
            except BaseException as err:
                outcome = type(err).__name__.encode()
            os.write(write_end, outcome)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        outcome = fh.read()
    os.waitpid(pid, 0)
    assert outcome in (b"denied 13", b"denied 1"), outcome


def test_host_files_and_self() -> None:
    assert procfs.parse_meminfo_slab(procfs.read_system("meminfo")) is not None
    assert procfs.status_int(procfs.read_bytes("self", "status"), "Tgid") == os.getpid()
    assert os.getpid() in procfs.pids()
    with pytest.raises(procfs.Gone):
        procfs.read_system("no-such-file")
